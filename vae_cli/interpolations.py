"""The paths `vae interpolate --method` (and the explore page's blend) can take from one code
to another, by name: INTERPOLATIONS is the one list of them.

The paths use tensor methods only, so this module does not import torch: the CLI reads the
names from here to refuse an unknown --method before torch loads."""


def linear_path(a, b, t):
    return (1 - t) * a + t * b


def slerp_path(a, b, t):
    """Spherical interpolation keeps the norm typical of a Gaussian prior, where the straight
    line passes through the unusually short middle."""
    angle = (a / a.norm() * b / b.norm()).sum().clamp(-1, 1).arccos()
    if angle <= 1e-6:  # parallel codes: the straight line is the great circle
        return linear_path(a, b, t)
    return (((1 - t) * angle).sin() * a + (t * angle).sin() * b) / angle.sin()


INTERPOLATIONS = {"linear": linear_path, "slerp": slerp_path}
