"""Pictures as cameras and phones write them: crop to the bright object, EXIF orientation,
16-bit PNGs, animated images; the same conversion for training folders and `interpolate`."""

import math

import pytest
import torch
from PIL import Image

from photo_moons import photo_moon
from vae_cli import config, data, images, moons


def moon_picture(size: int, centre: tuple[float, float], radius: float, phase: float = 0.5) -> torch.Tensor:
    """A clean moon at a given place in a size x size frame: (1, 1, size, size)."""
    one = torch.ones(1)
    return moons.render(one * phase, one * radius, one * centre[0], one * centre[1], one, size)


def test_crop_frames_a_small_off_centre_moon_like_a_centred_one():
    small = moon_picture(400, (0.3, 0.7), 0.06)
    centred = moon_picture(100, (0.5, 0.5), 0.24)
    a, b = images.frame_object(small, 28), images.frame_object(centred, 28)
    assert float((a - b).abs().mean()) < 0.02
    # The object's longer side (the disk's height, for a half moon) spans FRAME_FILL of the frame.
    rows_with_moon = (a[0, 0] > 0.5).any(1).sum()
    assert abs(int(rows_with_moon) - images.FRAME_FILL * 28) <= 2.5


@pytest.mark.parametrize("size", [56, 400])
def test_crop_frames_the_whole_disk_of_a_moon_lit_from_any_side(size):
    """The square is the moon's disk, not its lit part: centred on the disk and spanning its
    diameter, for crescents to full moons with the sun anywhere on the circle (the crop once
    chose between a left and a right limb, and framed a moon lit from below by its lit half)."""
    n = 300
    g = torch.Generator().manual_seed(0)
    phase, sun_angle = 0.2 + 0.8 * torch.rand(n, generator=g), 2 * math.pi * torch.rand(n, generator=g)
    radius = 0.15 + 0.25 * torch.rand(n, generator=g)
    centre = 0.5 + (torch.rand(n, 2, generator=g) - 0.5) * (1 - 2 * radius.view(-1, 1))
    pictures = moons.render(phase, radius, centre[:, 0], centre[:, 1], torch.ones(n), size, sun_angle)
    bright = pictures[:, 0] > 0.3
    rows, columns = bright.any(2), bright.any(1)
    first = lambda mask: mask.float().argmax(1).float()  # noqa: E731
    last = lambda mask: mask.shape[1] - mask.flip(1).float().argmax(1).float()  # noqa: E731
    boxes = torch.stack([first(columns), first(rows), last(columns), last(rows)], 1)
    found_centre, side = images._object_square(bright, boxes)
    pixels_per_radius = radius * size
    centre_error = (found_centre / size - centre).norm(dim=1) * size / pixels_per_radius
    size_error = side / (2 * pixels_per_radius) - 1
    assert float(centre_error.max()) < 0.1 and float(centre_error.mean()) < 0.02
    assert float(size_error.abs().max()) < 0.08  # the half-pixel outlines of the smallest moons
    # A half moon lit from below is framed exactly like the full moon in the same place.
    half_below, full = (moons.render(torch.tensor([p]), torch.tensor([0.2]), torch.tensor([0.4]), torch.tensor([0.6]),
                                     torch.ones(1), size, torch.tensor([-math.pi / 2])) for p in (0.5, 1.0))
    framed_half, framed_full = images.frame_object(half_below, 28), images.frame_object(full, 28)
    lower = framed_full[..., 14:, :]
    assert float((framed_half[..., 14:, :] - lower).abs().mean()) < 0.03 and float(lower.mean()) > 0.3


def test_crop_frames_a_waning_moon_as_the_mirror_image_of_a_waxing_one():
    """A moon between new and full is centred on its disk by its round limb, whichever side
    that is on: mirroring the picture mirrors the framed moon (a tie once always picked the
    right-hand limb, and framed a third of the waning gibbous moons off their disk)."""
    n = 128
    for phase in (1.0, 0.9, 0.75, 0.5, 0.3):
        waxing, _ = moons.photo_sample(n, 56, 5, phase=torch.full((n,), phase), sun_angle=torch.zeros(n))
        mirrored = images.frame_object(waxing, 28).flip(-1)
        waning = images.frame_object(waxing.flip(-1), 28)
        assert float(((mirrored - waning).abs().flatten(1).mean(1) > 0.02).float().mean()) <= 0.01, phase


def test_crop_ignores_stars_and_keeps_the_sky_colour_outside_the_picture():
    sky = torch.tensor([0.05, 0.08, 0.2]).view(1, 3, 1, 1)
    picture = sky.expand(1, 3, 300, 300).clone()
    picture += moon_picture(300, (0.9, 0.5), 0.08, phase=1.0) * 0.8  # near the right edge
    for x, y in ((20, 30), (250, 270), (40, 200)):
        picture[0, :, y:y + 2, x:x + 2] = 1.0  # bright two-pixel stars
    framed = images.frame_object(picture, 28)
    assert torch.allclose(framed[0, :, 14, -1], sky.flatten(), atol=0.02)  # beyond the edge: sky
    assert float(framed[0, :, 14, 14].mean()) > 0.7  # the moon in the middle


def test_crop_keeps_the_whole_frame_when_nothing_stands_out():
    flat = torch.full((1, 1, 40, 40), 0.3)
    assert torch.allclose(images.frame_object(flat, 20), torch.full((1, 1, 20, 20), 0.3), atol=1e-5)


def test_exif_orientation_is_applied(tmp_path):
    picture = Image.new("L", (60, 40))
    picture.paste(255, (0, 0, 20, 40))  # bright band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90 degrees clockwise
    picture.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    pixels = images.read_image(tmp_path / "turned.jpg", 1, 20)[0][0].float()
    assert pixels[:5].mean() > 200 and pixels[-5:].mean() < 50  # the band is on top, as displayed


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    moon = (moon_picture(64, (0.5, 0.5), 0.3, phase=0.75)[0, 0] * 65535).round().to(torch.int32)
    Image.fromarray(moon.numpy().astype("uint16")).save(tmp_path / "moon16.png")
    Image.fromarray((moon / 257).round().numpy().astype("uint8")).save(tmp_path / "moon8.png")
    assert Image.open(tmp_path / "moon16.png").mode == "I;16"
    for crop in ("none", "object"):
        sixteen = images.read_image(tmp_path / "moon16.png", 1, 28, crop)[0].int()
        eight = images.read_image(tmp_path / "moon8.png", 1, 28, crop)[0].int()
        assert (sixteen - eight).abs().max() <= 1


def test_animated_image_gives_its_first_frame_with_a_note(tmp_path):
    frames = [Image.new("L", (32, 32), 30), Image.new("L", (32, 32), 220)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    pixels, _, notes = images.read_image(tmp_path / "anim.gif", 1, 16)
    assert int(pixels.float().mean().round()) == 30
    assert notes == ["used the first of its 2 frames"]


def test_folder_and_interpolation_inputs_go_through_the_same_conversion(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        photo_moon(0.3 + 0.3 * index, 240, seed=index, radius=0.15, centre=(0.4, 0.6)).save(folder / f"{index}.jpg")
    data_config = config.DataConfig(name="folder", path=str(folder), crop="object", test_fraction=0.34)
    loaded = data.load(data_config)
    every = torch.cat([loaded.split("train")[0], loaded.split("test")[0]])
    for path in sorted(folder.iterdir()):
        reference = data.load_references([str(path)], data_config)[0]
        assert any(torch.equal(reference, image) for image in every)
    assert data_config.framing == "object" and config.DataConfig().framing == "object"
    assert config.DataConfig(name="mnist").framing == "none"


def test_photo_moons_vary_but_keep_the_phase_with_the_sun_anywhere():
    images_, phase = moons.photo_sample(64, 56, seed=3)
    again, _ = moons.photo_sample(64, 56, seed=3)
    assert torch.equal(images_, again) and images_.shape == (64, 1, 56, 56)
    assert 0 <= images_.min() and images_.max() <= 1 and 0.03 <= phase.min() and phase.max() <= 1
    # With the same seed the camera is the same, and the light comes from where the sun stands:
    # the crescent's light lies on the sun's side of the disk's centre.
    crescent = torch.tensor([0.3])
    axis = torch.arange(56.0)

    def light_centre(image):
        light = (image[0, 0] - image.median()).clamp(min=0)
        return torch.stack([(light.sum(0) * axis).sum(), (light.sum(1) * axis).sum()]) / light.sum()
    for degrees in (0, 60, 90, 180, 250):
        sun_angle = torch.tensor([math.radians(degrees)])
        full, crescent_light = (light_centre(moons.photo_sample(1, 56, seed=4, phase=p, sun_angle=sun_angle)[0])
                                for p in (torch.tensor([1.0]), crescent))
        towards_sun = torch.tensor([math.cos(math.radians(degrees)), -math.sin(math.radians(degrees))])
        sideways = torch.tensor([-towards_sun[1], towards_sun[0]])
        along, across = float((crescent_light - full) @ towards_sun), float((crescent_light - full) @ sideways)
        assert along > 3 and abs(across) < 0.25 * along, degrees
