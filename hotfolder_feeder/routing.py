"""Routing: choose the printer for each delivery from the config's rules.

Rules are tried in order and the first whose patterns all match wins; a rule with no patterns
matches everything. Patterns are shell globs (`*`, `?`, `[...]`) compared case-insensitively,
because SKUs and setup names arrive in mixed case. A key the delivery does not have matches only
the pattern `*`.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def target_of(settings: Settings, attributes: Mapping[str, str]) -> str | None:
    """Return the printer or group name the first matching rule names, else the default."""
    for rule in settings.routing.rules:
        if matches(rule, attributes):
            return rule.printer or rule.group
    return settings.routing.default


class Router:
    """Routes the deliveries of one job, keeping a group's choice for the whole job."""

    def __init__(self, settings: Settings, waiting: Mapping[str, int]) -> None:
        self._settings = settings
        self._waiting = waiting
        self._printer_names = {printer.name for printer in settings.printers}
        self._chosen_in_group: dict[str, str] = {}

    def route(self, delivery: PlannedDelivery) -> str | None:
        """Return the printer for a delivery, or None when no rule and no default applies."""
        target = target_of(self._settings, attributes_of(delivery))
        if target is None or target in self._printer_names:
            return target
        return self._member_of(target)

    def _member_of(self, group: str) -> str:
        if group not in self._chosen_in_group:
            members = self._settings.group_members(group)
            least_busy = min(members, key=lambda printer: self._waiting.get(printer.name, 0))
            self._chosen_in_group[group] = least_busy.name
        return self._chosen_in_group[group]
