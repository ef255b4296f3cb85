"""Routing: choose the printer for each delivery from the config's rules.

Rules are tried in order and the first whose patterns all match wins; a rule with no patterns
matches everything. Patterns are shell globs (`*`, `?`, `[...]`) compared case-insensitively,
because SKUs and setup names arrive in mixed case. A key the delivery does not have matches only
the pattern `*`.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from fnmatch import fnmatchcase

from . import quickp
from .config import RuleSettings, Settings
from .kornitx import PlannedDelivery


def attributes_of(delivery: PlannedDelivery) -> dict[str, str]:
    """Return the match keys of a delivery: its payload keys plus the Quick P setup and pallet."""
    attributes = dict(delivery.attributes)
    parsed = quickp.parse(delivery.artwork_name)
    if parsed is not None:
        attributes["setup"] = parsed.setup
        attributes["pallet"] = parsed.pallet
    return attributes


def matches(rule: RuleSettings, attributes: Mapping[str, str]) -> bool:
    for key, pattern in rule.patterns().items():
        value = attributes.get(key)
        if value is None:
            if pattern != "*":
                return False
        elif not fnmatchcase(value.lower(), pattern.lower()):
            return False
    return True


def rule_for(settings: Settings, attributes: Mapping[str, str]) -> RuleSettings | None:
    """Return the first rule whose patterns all match, or None."""
    for rule in settings.routing.rules:
        if matches(rule, attributes):
            return rule
    return None


@dataclass(frozen=True)
class Route:
    printer: str
    priority: int


class Router:
    """Routes the deliveries of one job, keeping a group's choice for the whole job.

    Within a group the printer with the fewest deliveries waiting is chosen, skipping paused
    printers unless every member is paused. A group with `spread = true` chooses per file.
    """

    def __init__(self, settings: Settings, waiting: Mapping[str, int], paused: Set[str] = frozenset()) -> None:
        self._settings = settings
        self._waiting = dict(waiting)
        self._paused = paused
        self._printer_names = {printer.name for printer in settings.printers}
        self._chosen_in_group: dict[str, str] = {}

    def route(self, delivery: PlannedDelivery) -> Route | None:
        """Return the printer and priority for a delivery, or None when nothing applies."""
        rule = rule_for(self._settings, attributes_of(delivery))
        target = (rule.printer or rule.group) if rule else self._settings.routing.default
        if target is None:
            return None
        printer = target if target in self._printer_names else self._member_of(target)
        self._waiting[printer] = self._waiting.get(printer, 0) + 1
        return Route(printer, rule.priority if rule else 0)

    def _member_of(self, group: str) -> str:
        if group in self._chosen_in_group and not self._settings.group_spreads(group):
            return self._chosen_in_group[group]
        members = self._settings.group_members(group)
        active = [printer for printer in members if printer.name not in self._paused] or members
        least_busy = min(active, key=lambda printer: self._waiting.get(printer.name, 0))
        self._chosen_in_group[group] = least_busy.name
        return least_busy.name
