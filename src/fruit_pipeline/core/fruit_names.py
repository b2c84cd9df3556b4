"""The fruit a person would name for a class folder: `Apple Red 2` and `Apple` are an apple.

Fruits-360 names varieties (`Apple Red 2`, `Pear Abate 1`), real-photo sets name fruits
(`Apple`, `Satsumas`, `Passion-Fruit`). The classifier the app needs tells fruits apart, so every
folder name maps to one fruit, from `conf/base/parameters_fruit_names.yml`. Names match whatever
their case, `-`, `_` or spaces, and without the number Fruits-360 ends a variety with
(`Apple Red 2` is listed as `Apple Red`). A name the file does not list is an error, never a new
class.
"""

import re
from collections.abc import Mapping

from pydantic import RootModel, model_validator

_SEPARATORS = re.compile(r"[\s_-]+")
_VARIETY_NUMBER = re.compile(r" \d+$")


def normalized(name: str) -> str:
    """A class name as the mapping looks it up: lower case, single spaces, no trailing number."""
    return _VARIETY_NUMBER.sub("", _SEPARATORS.sub(" ", name.strip()).lower())


class UnmappedFolder(ValueError):
    """A class folder whose fruit the mapping does not give."""


class FruitNames(RootModel[dict[str, tuple[str, ...]]]):
    """`fruit_names`: each fruit with the class names that show it."""

    @model_validator(mode="after")
    def _each_name_once(self) -> "FruitNames":
        seen: dict[str, str] = {}
        for fruit, names in self.root.items():
            for name in (fruit, *names):
                key = normalized(name)
                if seen.setdefault(key, fruit) != fruit:
                    raise ValueError(
                        f"fruit_names: {name!r} is listed under {seen[key]!r} and {fruit!r}."
                    )
        return self

    def lookup(self) -> dict[str, str]:
        """Each normalized class name (and each fruit's own name) to its fruit."""
        return {
            normalized(name): fruit
            for fruit, names in self.root.items()
            for name in (fruit, *names)
        }

    def fruits_of(self, examples: Mapping[str, str]) -> dict[str, str]:
        """Each class name's fruit; `examples` gives a file of each, named when one is unmapped."""
        lookup = self.lookup()
        unmapped = sorted(name for name in examples if normalized(name) not in lookup)
        if unmapped:
            listed = "; ".join(f"{name!r} (e.g. {examples[name]})" for name in unmapped)
            raise UnmappedFolder(
                f"No fruit name for the class folder(s) {listed}: add each under its fruit in "
                "conf/base/parameters_fruit_names.yml."
            )
        return {name: lookup[normalized(name)] for name in examples}
