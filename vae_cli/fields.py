"""Config fields with their rules, shared by config.py's sections and each model kind's options
(vae_cli/kinds/options.py). No torch, so that a config can be checked before torch is loaded."""

import dataclasses
import typing
from dataclasses import field


def option(default, help: str, choices: tuple | None = None, minimum: float | None = None,
           above: float | None = None, used_by: tuple[str, ...] | None = None, maximum: float | None = None,
           used_with: tuple[str, tuple] | None = None):
    """A config field: its default, a help line, and the rules the checker enforces. `used_by`
    limits a key to the values of its section's selector (model.kind, data.name) that read it
    (None: every value); `used_with` = (other key, values) limits it further to those values of
    another key of its section (a likelihood's own option, read only with that likelihood)."""
    rules = {"help": help, "choices": choices, "minimum": minimum, "above": above, "used_by": used_by,
             "maximum": maximum, "used_with": used_with}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=rules)
    return field(default=default, metadata=rules)


def default_of(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def option_like(f: dataclasses.Field, **rules):
    """A copy of field `f` (an option) with some rules replaced."""
    return option(default_of(f), **{**f.metadata, **rules})


class Section:
    """A config section whose `selector` key decides which of its other keys are read."""
    selector: typing.ClassVar[str | None] = None

    def rules(self, name: str) -> typing.Mapping:
        return next(f for f in dataclasses.fields(self) if f.name == name).metadata

    def used_by(self, name: str) -> tuple[str, ...] | None:
        """The selector values that read key `name` (None: every value)."""
        return self.rules(name)["used_by"]

    def applies(self, name: str) -> bool:
        """Whether key `name` is read, given this section's selector and other values."""
        used_by, used_with = self.used_by(name), self.rules(name)["used_with"]
        if used_by is not None and getattr(self, self.selector) not in used_by:
            return False
        if used_with is not None:
            other, values = used_with
            return self.applies(other) and getattr(self, other) in values
        return True
