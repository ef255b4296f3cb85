"""Routing and naming of planned deliveries, with settings built by config.build()."""

import json
from pathlib import Path
from typing import Any

import pytest

from hotfolder_feeder import config, kornitx, naming, quickp, routing
from hotfolder_feeder.config import Settings
from hotfolder_feeder.errors import ConfigError
from hotfolder_feeder.kornitx import PlannedDelivery

EXAMPLES = Path(kornitx.__file__).parent / "examples"

CONSOLIDATION_NAMES = [
    "AV HD6 Black HQ_64021_Hoodies Full Size_71128134-output-3950663_1_16_129.png",
    "AV HD6 Black HQ_64021_Hoodies Full Size_71128135-output-3950663_1_14_116.png",
]

WINDOWS_INVALID = set('<>:"/\\|?*') | {chr(code) for code in range(0x20)}


def example_deliveries(name: str) -> list[PlannedDelivery]:
    data = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return kornitx.plan(kornitx.parse_job(data))


def consolidation_deliveries() -> list[PlannedDelivery]:
    return example_deliveries("consolidation-job.json")


def job_artwork_delivery() -> PlannedDelivery:
    return example_deliveries("artwork-processing-job.json")[0]


def item_delivery(name: str, **order_item: Any) -> PlannedDelivery:
    """Plan one item artwork called `name` from a minimal consolidation job."""
    artwork = [{"name": name, "clientUrl": "https://example.test/art"}]
    order_item_table = {"id": 22, "artwork": artwork, **order_item}
    item = {"id": 11, "order_item_id": 22, "order_item": order_item_table}
    return kornitx.plan(kornitx.parse_job({"id": 7, "artwork": None, "items": [item]}))[0]


def job_delivery(name: str) -> PlannedDelivery:
    """Plan one job-level artwork called `name` from a minimal artwork-processing job."""
    data = {"id": 7, "artwork": {name: ["https://example.test/art"]}, "items": []}
    return kornitx.plan(kornitx.parse_job(data))[0]


def printer_table(name: str, **keys: Any) -> dict[str, Any]:
    return {"name": name, "hotfolder": f"hot/{name}", **keys}


def build_settings(
    tmp_path: Path,
    rules: list[dict[str, Any]] | None = None,
    default: str | None = None,
    printers: list[dict[str, Any]] | None = None,
) -> Settings:
    if printers is None:
        printers = [printer_table("p1"), printer_table("p2"), printer_table("p3")]
    routing_table: dict[str, Any] = {"rules": rules or []}
    if default is not None:
        routing_table["default"] = default
    raw = {"printers": printers, "routing": routing_table}
    return config.build(raw, base=tmp_path, source="test")


def route(
    settings: Settings, delivery: PlannedDelivery, waiting: dict[str, int] | None = None
) -> str | None:
    routed = routing.Router(settings, waiting or {}).route(delivery)
    return routed.printer if routed else None


# ---------------------------------------------------------------------------------------------
# Match keys and rules


def test_attributes_quickp_setup_pallet() -> None:
    """A Quick P artwork name adds its setup and pallet to the payload's match keys."""
    attributes = routing.attributes_of(consolidation_deliveries()[0])

    assert attributes["setup"] == "AV HD6 Black HQ"
    assert attributes["pallet"] == "Hoodies Full Size"
    assert attributes["sku"] == "Jh001-PSTEST"
    assert attributes["kind"] == "consolidation"
    assert attributes["ext"] == "png"


def test_attributes_plain_name_no_setup() -> None:
    """A name that is not a Quick P name gives no setup or pallet key."""
    attributes = routing.attributes_of(job_artwork_delivery())

    assert "setup" not in attributes
    assert "pallet" not in attributes
    assert attributes["kind"] == "artwork_processing"


def test_route_first_match_wins(tmp_path: Path) -> None:
    """When several rules match, the first one in the config chooses the printer."""
    rules = [
        {"sku": "nothing-like-this", "printer": "p1"},
        {"kind": "consolidation", "printer": "p2"},
        {"ext": "png", "printer": "p3"},
    ]
    settings = build_settings(tmp_path, rules, default="p1")

    assert route(settings, consolidation_deliveries()[0]) == "p2"


def test_route_rule_without_patterns(tmp_path: Path) -> None:
    """A rule that sets no match key matches every delivery."""
    rules = [{"printer": "p3"}, {"kind": "consolidation", "printer": "p2"}]
    settings = build_settings(tmp_path, rules)

    assert route(settings, consolidation_deliveries()[0]) == "p3"
    assert route(settings, job_artwork_delivery()) == "p3"


def test_route_all_patterns_must_match(tmp_path: Path) -> None:
    """A rule with several keys matches only when every key matches."""
    rules = [
        {"kind": "consolidation", "sku": "nothing-like-this", "printer": "p1"},
        {"kind": "consolidation", "sku": "jh001*", "printer": "p2"},
    ]
    settings = build_settings(tmp_path, rules)

    assert route(settings, consolidation_deliveries()[0]) == "p2"


@pytest.mark.parametrize(
    ("key", "pattern", "expected"),
    [
        pytest.param("mapped_sku", "JH001 *", ["p2", "p2"], id="star"),
        pytest.param("mapped_sku", "JH001 ??? *", ["p2", "p2"], id="question-marks"),
        pytest.param("mapped_sku", "JH001 [H]*", ["p2", "p1"], id="character-set"),
        pytest.param("mapped_sku", "JH001 [!H]*", ["p1", "p2"], id="negated-set"),
        pytest.param("mapped_sku", "JH001", ["p1", "p1"], id="no-wildcard-whole-value"),
        pytest.param("pallet", "*Full Size", ["p2", "p2"], id="pallet-suffix"),
    ],
)
def test_route_glob_patterns(tmp_path: Path, key: str, pattern: str, expected: list[str]) -> None:
    """Rule patterns are shell globs matched against the whole value."""
    settings = build_settings(tmp_path, [{key: pattern, "printer": "p2"}], default="p1")

    routed = [route(settings, delivery) for delivery in consolidation_deliveries()]

    assert routed == expected


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        pytest.param("sku", "jh001-pstest", id="lower-pattern"),
        pytest.param("sku", "JH001-PSTEST", id="upper-pattern"),
        pytest.param("setup", "av hd6 black hq", id="setup"),
        pytest.param("pallet", "HOODIES FULL*", id="pallet"),
        pytest.param("ext", "PNG", id="ext"),
        pytest.param("mapped_sku", "jh001 [h]ea xl", id="set-lower"),
    ],
)
def test_route_case_insensitive(tmp_path: Path, key: str, pattern: str) -> None:
    """Patterns match regardless of letter case in the value or the pattern."""
    settings = build_settings(tmp_path, [{key: pattern, "printer": "p2"}], default="p1")

    assert route(settings, consolidation_deliveries()[0]) == "p2"


def test_route_setup_and_pallet(tmp_path: Path) -> None:
    """Rules can route on the setup and pallet parsed from a Quick P name."""
    rules = [
        {"setup": "AV HD6 White*", "printer": "p1"},
        {"setup": "AV HD6 Black*", "pallet": "Hoodies*", "printer": "p3"},
    ]
    settings = build_settings(tmp_path, rules, default="p2")

    assert route(settings, consolidation_deliveries()[0]) == "p3"
    assert route(settings, item_delivery("White Setup_1_Youth_art_1_0_0.png")) == "p2"


def test_route_type_from_integer(tmp_path: Path) -> None:
    """A rule's integer `type` matches the item type of the payload."""
    rules = [{"type": 3, "printer": "p1"}, {"type": 2, "printer": "p3"}]
    settings = build_settings(tmp_path, rules)

    assert route(settings, consolidation_deliveries()[0]) == "p3"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        pytest.param("*", "p2", id="star-matches"),
        pytest.param("?*", "p1", id="question-star-no-match"),
        pytest.param("[!x]*", "p1", id="negated-set-no-match"),
        pytest.param("", "p1", id="empty-no-match"),
    ],
)
def test_route_absent_key_only_star(tmp_path: Path, pattern: str, expected: str) -> None:
    """A key the delivery does not have matches only the pattern "*"."""
    settings = build_settings(tmp_path, [{"sku": pattern, "printer": "p2"}], default="p1")
    delivery = item_delivery("front.png")

    assert "sku" not in routing.attributes_of(delivery)
    assert route(settings, delivery) == expected


def test_route_present_empty_value_star(tmp_path: Path) -> None:
    """An empty value that the payload does carry matches "*" but not "?*"."""
    settings = build_settings(
        tmp_path,
        [{"shipping_carrier": "?*", "printer": "p3"}, {"shipping_carrier": "*", "printer": "p2"}],
        default="p1",
    )
    delivery = consolidation_deliveries()[0]

    assert routing.attributes_of(delivery)["shipping_carrier"] == ""
    assert route(settings, delivery) == "p2"


def test_route_default_when_no_match(tmp_path: Path) -> None:
    """The routing default applies when no rule matches."""
    rules = [{"sku": "nothing-like-this", "printer": "p1"}]
    settings = build_settings(tmp_path, rules, default="p3")

    assert route(settings, consolidation_deliveries()[0]) == "p3"
    assert route(settings, job_artwork_delivery()) == "p3"


def test_route_none_without_default(tmp_path: Path) -> None:
    """With no matching rule and no default, route() returns None."""
    settings = build_settings(tmp_path, [{"sku": "nothing-like-this", "printer": "p1"}])

    assert settings.routing.default is None
    assert route(settings, consolidation_deliveries()[0]) is None


def test_route_none_without_rules(tmp_path: Path) -> None:
    """With no rules and no default, route() returns None."""
    settings = build_settings(tmp_path)

    assert route(settings, job_artwork_delivery()) is None


# ---------------------------------------------------------------------------------------------
# Groups

GROUP_PRINTERS = [
    printer_table("solo"),
    printer_table("g1", group="storm"),
    printer_table("g2", group="storm"),
    printer_table("g3", group="storm"),
]


def test_route_group_fewest_waiting(tmp_path: Path) -> None:
    """A group rule sends every delivery of the job to the member with the fewest waiting."""
    settings = build_settings(tmp_path, [{"group": "storm"}], printers=GROUP_PRINTERS)
    router = routing.Router(settings, {"solo": 0, "g1": 4, "g2": 1, "g3": 2})

    routed = [router.route(delivery) for delivery in consolidation_deliveries()]

    assert [route.printer for route in routed if route] == ["g2", "g2"]


def test_route_group_choice_kept_for_job(tmp_path: Path) -> None:
    """A router keeps its group choice for the job even when the waiting counts change."""
    settings = build_settings(tmp_path, [{"group": "storm"}], printers=GROUP_PRINTERS)
    waiting = {"g1": 4, "g2": 1, "g3": 2}
    router = routing.Router(settings, waiting)
    first, second = consolidation_deliveries()

    assert router.route(first) == routing.Route("g2", 0)
    waiting["g2"] = 10
    assert router.route(second) == routing.Route("g2", 0)


def test_route_group_next_job_rechosen(tmp_path: Path) -> None:
    """A new router, as for the next job, chooses again from the current waiting counts."""
    settings = build_settings(tmp_path, [{"group": "storm"}], printers=GROUP_PRINTERS)
    delivery = consolidation_deliveries()[0]

    assert route(settings, delivery, {"g1": 4, "g2": 1, "g3": 2}) == "g2"
    assert route(settings, delivery, {"g1": 4, "g2": 9, "g3": 2}) == "g3"


def test_route_group_unknown_count_zero(tmp_path: Path) -> None:
    """A member absent from the waiting counts is taken to have none waiting."""
    settings = build_settings(tmp_path, [{"group": "storm"}], printers=GROUP_PRINTERS)

    assert route(settings, consolidation_deliveries()[0], {"g1": 3, "g2": 1}) == "g3"


def test_route_default_group(tmp_path: Path) -> None:
    """A routing default that names a group picks the member with the fewest waiting."""
    settings = build_settings(tmp_path, default="storm", printers=GROUP_PRINTERS)

    assert route(settings, job_artwork_delivery(), {"g1": 2, "g2": 3, "g3": 1}) == "g3"


def test_route_group_named_like_printer(tmp_path: Path) -> None:
    """A rule's group is never replaced by a printer of the same name outside the group."""
    printers = [printer_table("shared", group="front"), printer_table("front")]
    try:
        settings = build_settings(tmp_path, [{"group": "front"}], printers=printers)
    except ConfigError:
        return

    assert route(settings, consolidation_deliveries()[0]) == "shared"


# ---------------------------------------------------------------------------------------------
# File names


def test_file_name_item_default(tmp_path: Path) -> None:
    """Item artwork keeps its name under the default template "{name}"."""
    printer = build_settings(tmp_path).printer("p1")

    deliveries = consolidation_deliveries()

    names = [naming.file_name(printer, delivery, 9972198) for delivery in deliveries]

    assert printer.name_template == "{name}"
    assert names == CONSOLIDATION_NAMES


def test_file_name_job_default(tmp_path: Path) -> None:
    """Job-level artwork gets the job id in front under the default "{job_id}_{name}"."""
    printer = build_settings(tmp_path).printer("p1")

    assert printer.job_artwork_template == "{job_id}_{name}"
    assert naming.file_name(printer, job_artwork_delivery(), 9972081) == "9972081_artwork.png"


def test_file_name_quickp_template(tmp_path: Path) -> None:
    """A custom template can rearrange the Quick P fields of the artwork name."""
    template = "{pallet}_{setup}_{item_id}_{copies}_{x}_{y}.{ext}"
    printers = [printer_table("p1", name_template=template)]
    printer = build_settings(tmp_path, printers=printers).printer("p1")

    deliveries = consolidation_deliveries()

    names = [naming.file_name(printer, delivery, 9972198) for delivery in deliveries]

    assert names == [
        "Hoodies Full Size_AV HD6 Black HQ_19157068_1_16_129.png",
        "Hoodies Full Size_AV HD6 Black HQ_19157069_1_14_116.png",
    ]


def test_file_name_other_fields(tmp_path: Path) -> None:
    """A template can use the job id, printer name, order ref and position."""
    template = "{printer}-{job_id}-{order_ref}-{index}-{stem}"
    printers = [printer_table("p1", job_artwork_template=template)]
    printer = build_settings(tmp_path, printers=printers).printer("p1")

    name = naming.file_name(printer, job_artwork_delivery(), 9972081)

    assert name == "p1-9972081-ADD14AE3630E28DA-1-artwork.png"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("{item_id}", "19157068.png", id="item-id"),
        pytest.param(
            "{stem}_{copies}", CONSOLIDATION_NAMES[0].removesuffix(".png") + "_1.png", id="stem"
        ),
        pytest.param("{setup}_{x}_{y}", "AV HD6 Black HQ_16_129.png", id="quickp-fields"),
    ],
)
def test_file_name_appends_extension(tmp_path: Path, template: str, expected: str) -> None:
    """The artwork's extension is appended when the template drops it."""
    printers = [printer_table("p1", name_template=template)]
    printer = build_settings(tmp_path, printers=printers).printer("p1")

    assert naming.file_name(printer, consolidation_deliveries()[0], 9972198) == expected


def test_file_name_extension_case_kept(tmp_path: Path) -> None:
    """A name whose extension differs only in case gets no second extension."""
    printer = build_settings(tmp_path).printer("p1")
    delivery = item_delivery("Front.PNG")

    assert delivery.ext == "png"
    assert naming.file_name(printer, delivery, 7) == "Front.PNG"


@pytest.mark.parametrize(
    ("artwork_name", "item_name", "job_name"),
    [
        pytest.param("../../etc/x.png", "-.-..-etc-x.png", "7_..-..-etc-x.png", id="parent-path"),
        pytest.param("..\\..\\x.png", "-.-..-x.png", "7_..-..-x.png", id="windows-parent-path"),
        pytest.param("/etc/x.png", "-etc-x.png", "7_-etc-x.png", id="absolute-path"),
        pytest.param("C:\\x.png", "C--x.png", "7_C--x.png", id="drive-letter"),
        pytest.param("CON.png", "CON-.png", "7_CON.png", id="device-name"),
        pytest.param("nul .png", "nul- .png", "7_nul .png", id="device-name-space"),
        pytest.param("x.png.", "x.png", "7_x.png", id="trailing-dot"),
        pytest.param("a<b>|c?.png", "a-b--c-.png", "7_a-b--c-.png", id="reserved-characters"),
    ],
)
def test_file_name_unsafe_artwork(
    tmp_path: Path, artwork_name: str, item_name: str, job_name: str
) -> None:
    """An unsafe artwork name becomes one safe file name inside the hot folder."""
    printer = build_settings(tmp_path).printer("p1")
    names = [
        naming.file_name(printer, item_delivery(artwork_name), 7),
        naming.file_name(printer, job_delivery(artwork_name), 7),
    ]

    assert names == [item_name, job_name]
    for name in names:
        assert not set(name) & WINDOWS_INVALID
        assert not name.startswith(".")
        assert quickp.safe_name(name) == name
        assert (printer.hotfolder / name).resolve().parent == printer.hotfolder.resolve()


def test_file_name_unsafe_template_value(tmp_path: Path) -> None:
    """Unsafe characters that a template field brings in are made safe too."""
    printers = [printer_table("p1", name_template="{sku}_{name}")]
    printer = build_settings(tmp_path, printers=printers).printer("p1")
    delivery = item_delivery("front.png", sku="../../SKU:1")

    name = naming.file_name(printer, delivery, 7)

    assert name == "-.-..-SKU-1_front.png"
    assert (printer.hotfolder / name).resolve().parent == printer.hotfolder.resolve()


def test_file_name_long_name_capped(tmp_path: Path) -> None:
    """A very long artwork name is cut to 255 UTF-8 bytes and keeps its extension."""
    printer = build_settings(tmp_path).printer("p1")
    delivery = item_delivery("é" * 300 + ".png")

    name = naming.file_name(printer, delivery, 7)

    assert len(name.encode("utf-8")) <= 255
    assert name.endswith(".png")


def test_route_group_spread(tmp_path: Path) -> None:
    """A group with spread = true sends each file to the member with the fewest waiting."""
    raw = {
        "printers": GROUP_PRINTERS,
        "groups": [{"name": "storm", "spread": True}],
        "routing": {"rules": [{"group": "storm"}]},
    }
    settings = config.build(raw, base=tmp_path, source="test")
    router = routing.Router(settings, {"g1": 1, "g2": 1, "g3": 5})

    routed = [router.route(delivery) for delivery in consolidation_deliveries()]

    assert sorted(route.printer for route in routed if route) == ["g1", "g2"]


def test_route_group_skips_paused(tmp_path: Path) -> None:
    """A paused member gets no new work while another member of its group is active."""
    settings = build_settings(tmp_path, [{"group": "storm"}], printers=GROUP_PRINTERS)
    router = routing.Router(settings, {"g1": 0, "g2": 5, "g3": 9}, paused={"g1"})

    routed = router.route(consolidation_deliveries()[0])

    assert routed == routing.Route("g2", 0)


def test_route_rule_priority(tmp_path: Path) -> None:
    """A matching rule's priority comes with its route; the default route has priority 0."""
    settings = build_settings(tmp_path, [{"sku": "JH001 GOL*", "printer": "p1", "priority": 5}], default="p1")
    deliveries = consolidation_deliveries()

    assert routing.Router(settings, {}).route(deliveries[1]) == routing.Route("p1", 5)
    assert routing.Router(settings, {}).route(deliveries[0]) == routing.Route("p1", 0)
