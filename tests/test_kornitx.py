import copy
import json
from pathlib import Path
from typing import Any

import pytest

from hotfolder_feeder import kornitx
from hotfolder_feeder.errors import PayloadError

EXAMPLES = Path(kornitx.__file__).parent / "examples"

ARTWORK_URL = (
    "https://s3-eu-west-1.amazonaws.com/generated-assets-gateway3d-com/batch/dlp6123cyc/flat.png"
)
S3_URL = "s3://generated-assets-gateway3d-com/batch/dlp6123cyc/flat.png"

CONSOLIDATION_NAMES = [
    "AV HD6 Black HQ_64021_Hoodies Full Size_71128134-output-3950663_1_16_129.png",
    "AV HD6 Black HQ_64021_Hoodies Full Size_71128135-output-3950663_1_14_116.png",
]
CONSOLIDATION_URLS = [
    "https://s3-eu-west-1.amazonaws.com/generated-assets-gateway3d-com/auto-crop/"
    "4f/af/93/39/59/92/1d/7f/6f/e0/e2/14/16/81/e7/22/"
    "95/cf/6b/32/a2/c6/06/44/6d/c4/75/86/fc/d5/e6/5d.png",
    "https://s3-eu-west-1.amazonaws.com/generated-assets-gateway3d-com/auto-crop/"
    "94/ab/92/cf/57/69/3e/a9/69/72/45/41/ba/47/c7/05/"
    "98/4c/24/0f/97/5b/d9/64/6c/04/3e/91/8b/35/72/6f.png",
]

# Marks a field that a table case deletes instead of setting.
MISSING = object()


def load_example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def artwork_job() -> dict[str, Any]:
    return load_example("artwork-processing-job.json")


def consolidation_job() -> dict[str, Any]:
    return load_example("consolidation-job.json")


def minimal_item(item_id: int, artwork: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": item_id,
        "order_item_id": item_id + 1000,
        "order_item": {"id": item_id + 1000, "artwork": artwork},
    }


def item_artwork(name: str, url: str = "https://example.test/art.png") -> dict[str, Any]:
    return {"name": name, "clientUrl": url}


def changed(
    document: dict[str, Any], location: tuple[str | int, ...], value: Any
) -> dict[str, Any]:
    """Return a deep copy of `document` with the field at `location` set, or deleted for MISSING."""
    result = copy.deepcopy(document)
    parent = result
    for part in location[:-1]:
        parent = parent[part]

    if value is MISSING:
        del parent[location[-1]]
    else:
        parent[location[-1]] = value
    return result


def payload_error(data: Any) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        kornitx.parse_job(data)
    return caught.value


# ---------------------------------------------------------------------------------------------
# The platform's example payloads


def test_parse_artwork_processing_example() -> None:
    """The example artwork-processing job parses as that kind, with both items."""
    job = kornitx.parse_job(artwork_job())

    assert job.id == 9972081
    assert job.kind == "artwork_processing"
    assert [item.id for item in job.items] == [19156817, 19156818]
    assert job.artwork == {"artwork.png": [ARTWORK_URL, S3_URL]}


def test_parse_consolidation_example() -> None:
    """The example consolidation job parses as that kind, with both items."""
    job = kornitx.parse_job(consolidation_job())

    assert job.id == 9972198
    assert job.kind == "consolidation"
    assert job.artwork is None
    assert [item.id for item in job.items] == [19157068, 19157069]


def test_plan_artwork_processing_example() -> None:
    """The job-level artwork becomes one delivery from the https URL, never the s3:// one."""
    planned = kornitx.plan(kornitx.parse_job(artwork_job()))

    assert len(planned) == 1
    delivery = planned[0]
    assert delivery.key == "job:artwork.png"
    assert delivery.url == ARTWORK_URL
    assert delivery.artwork_name == "artwork.png"
    assert delivery.ext == "png"
    assert delivery.position == 0
    assert delivery.item_id is None
    assert delivery.order_item_id is None


def test_plan_artwork_processing_attributes() -> None:
    """Job-level artwork takes its routing attributes from the first item."""
    delivery = kornitx.plan(kornitx.parse_job(artwork_job()))[0]

    assert delivery.attributes["kind"] == "artwork_processing"
    assert delivery.attributes["sku"] == "SGS7E-CS-G-TEST"
    assert delivery.attributes["type"] == "2"
    assert delivery.attributes["shipping_country"] == "GB"
    assert delivery.attributes["shipping_carrier"] == "Hermes"
    assert delivery.attributes["ext"] == "png"


def test_plan_s3_url_first_is_skipped() -> None:
    """The first http(s) URL is used even when an s3:// URL comes before it."""
    data = changed(artwork_job(), ("artwork", "artwork.png"), [S3_URL, ARTWORK_URL])

    planned = kornitx.plan(kornitx.parse_job(data))

    assert [delivery.url for delivery in planned] == [ARTWORK_URL]


def test_plan_consolidation_example() -> None:
    """Each item's artwork object becomes one delivery carrying the item's ids and clientUrl."""
    planned = kornitx.plan(kornitx.parse_job(consolidation_job()))

    assert len(planned) == 2
    assert [delivery.item_id for delivery in planned] == [19157068, 19157069]
    assert [delivery.order_item_id for delivery in planned] == [71128134, 71128135]
    assert [delivery.artwork_name for delivery in planned] == CONSOLIDATION_NAMES
    assert [delivery.url for delivery in planned] == CONSOLIDATION_URLS
    assert [delivery.position for delivery in planned] == [0, 1]
    assert [delivery.ext for delivery in planned] == ["png", "png"]


def test_plan_consolidation_keys_and_attributes() -> None:
    """Item deliveries are keyed by item id and artwork name and carry the item's attributes."""
    planned = kornitx.plan(kornitx.parse_job(consolidation_job()))

    assert planned[0].key == f"item:19157068:{CONSOLIDATION_NAMES[0]}"
    assert planned[1].key == f"item:19157069:{CONSOLIDATION_NAMES[1]}"
    assert planned[0].attributes["kind"] == "consolidation"
    assert planned[0].attributes["sku"] == "Jh001-PSTEST"
    assert planned[1].attributes["mapped_sku"] == "JH001 GOL M"


def test_plan_null_item_artwork_no_delivery() -> None:
    """A consolidation item with "artwork": null is accepted and gives no delivery."""
    data = changed(consolidation_job(), ("items", 0, "order_item", "artwork"), None)

    job = kornitx.parse_job(data)
    planned = kornitx.plan(job)

    assert len(job.items) == 2
    assert [delivery.item_id for delivery in planned] == [19157069]


def test_plan_all_items_null_artwork() -> None:
    """A consolidation job whose items all have null artwork plans no delivery."""
    data = {"id": 7, "artwork": None, "items": [minimal_item(1), minimal_item(2)]}

    assert kornitx.plan(kornitx.parse_job(data)) == []


def test_plan_duplicate_name_on_item_once() -> None:
    """The same artwork name twice on one item is planned once, with the first URL."""
    artwork = [
        item_artwork("front.png", "https://example.test/first.png"),
        item_artwork("front.png", "https://example.test/second.png"),
        item_artwork("back.png"),
    ]
    data = {"id": 7, "artwork": None, "items": [minimal_item(1, artwork)]}

    planned = kornitx.plan(kornitx.parse_job(data))

    assert [delivery.artwork_name for delivery in planned] == ["front.png", "back.png"]
    assert planned[0].url == "https://example.test/first.png"
    assert [delivery.position for delivery in planned] == [0, 1]


def test_plan_same_name_on_two_items() -> None:
    """The same artwork name on two different items is two deliveries."""
    items = [
        minimal_item(1, [item_artwork("front.png")]),
        minimal_item(2, [item_artwork("front.png")]),
    ]
    data = {"id": 7, "artwork": None, "items": items}

    planned = kornitx.plan(kornitx.parse_job(data))

    assert [delivery.key for delivery in planned] == ["item:1:front.png", "item:2:front.png"]


def test_plan_item_ext_from_payload() -> None:
    """An item artwork's `ext` field sets the extension, lower-cased."""
    artwork = [{"name": "front", "ext": "PNG", "clientUrl": "https://example.test/a"}]
    data = {"id": 7, "artwork": None, "items": [minimal_item(1, artwork)]}

    planned = kornitx.plan(kornitx.parse_job(data))

    assert planned[0].ext == "png"
    assert planned[0].attributes["ext"] == "png"


# ---------------------------------------------------------------------------------------------
# Validation: each required field missing or of the wrong type

REQUIRED = "is required but missing"
ITEM = ("items", 1)
ORDER_ITEM = ("items", 1, "order_item")
ARTWORK_0 = ("items", 1, "order_item", "artwork", 0)
ARTWORK_0_PATH = "$.items[1].order_item.artwork[0]"

CONSOLIDATION_CASES = [
    # Job id
    pytest.param(("id",), MISSING, "$.id", REQUIRED, id="job-id-missing"),
    pytest.param(("id",), "9972198", "$.id", "got a string", id="job-id-string"),
    pytest.param(("id",), True, "$.id", "got a boolean", id="job-id-bool"),
    pytest.param(("id",), 9972198.0, "$.id", "got a number", id="job-id-float"),
    pytest.param(("id",), None, "$.id", "got null", id="job-id-null"),
    pytest.param(("id",), 0, "$.id", "greater than 0", id="job-id-zero"),
    # Job artwork: the key must be present, null is allowed
    pytest.param(("artwork",), MISSING, "$.artwork", REQUIRED, id="artwork-missing"),
    pytest.param(("artwork",), [], "$.artwork", "got an array", id="artwork-list"),
    pytest.param(("artwork",), "artwork.png", "$.artwork", "got a string", id="artwork-string"),
    # Items
    pytest.param(("items",), MISSING, "$.items", REQUIRED, id="items-missing"),
    pytest.param(("items",), {"0": {}}, "$.items", "got an object", id="items-object"),
    pytest.param(("items",), None, "$.items", "got null", id="items-null"),
    pytest.param(ITEM, "item", "$.items[1]", "got a string", id="item-string"),
    # items[i].id
    pytest.param((*ITEM, "id"), MISSING, "$.items[1].id", REQUIRED, id="item-id-missing"),
    pytest.param((*ITEM, "id"), "19157069", "$.items[1].id", "got a string", id="item-id-string"),
    pytest.param((*ITEM, "id"), True, "$.items[1].id", "got a boolean", id="item-id-bool"),
    # items[i].order_item_id
    pytest.param(
        (*ITEM, "order_item_id"), MISSING, "$.items[1].order_item_id", REQUIRED,
        id="order-item-id-missing",
    ),
    pytest.param(
        (*ITEM, "order_item_id"), "71128135", "$.items[1].order_item_id", "got a string",
        id="order-item-id-string",
    ),
    pytest.param(
        (*ITEM, "order_item_id"), False, "$.items[1].order_item_id", "got a boolean",
        id="order-item-id-bool",
    ),
    # items[i].order_item
    pytest.param(ORDER_ITEM, MISSING, "$.items[1].order_item", REQUIRED, id="order-item-missing"),
    pytest.param(
        ORDER_ITEM, "71128135", "$.items[1].order_item", "got a string", id="order-item-string"
    ),
    pytest.param(ORDER_ITEM, [], "$.items[1].order_item", "got an array", id="order-item-list"),
    pytest.param(ORDER_ITEM, None, "$.items[1].order_item", "got null", id="order-item-null"),
    # order_item.id
    pytest.param(
        (*ORDER_ITEM, "id"), MISSING, "$.items[1].order_item.id", REQUIRED,
        id="order-item-inner-id-missing",
    ),
    pytest.param(
        (*ORDER_ITEM, "id"), "71128135", "$.items[1].order_item.id", "got a string",
        id="order-item-inner-id-string",
    ),
    pytest.param(
        (*ORDER_ITEM, "id"), True, "$.items[1].order_item.id", "got a boolean",
        id="order-item-inner-id-bool",
    ),
    # order_item.artwork and its objects
    pytest.param(
        (*ORDER_ITEM, "artwork"), {"name": "a.png"}, "$.items[1].order_item.artwork",
        "got an object", id="item-artwork-object",
    ),
    pytest.param(
        ARTWORK_0, "a.png", ARTWORK_0_PATH, "got a string", id="item-artwork-entry-string"
    ),
    # Artwork object name
    pytest.param(
        (*ARTWORK_0, "name"), MISSING, f"{ARTWORK_0_PATH}.name", REQUIRED,
        id="artwork-name-missing",
    ),
    pytest.param(
        (*ARTWORK_0, "name"), 5, f"{ARTWORK_0_PATH}.name", "got a number", id="artwork-name-number"
    ),
    pytest.param(
        (*ARTWORK_0, "name"), None, f"{ARTWORK_0_PATH}.name", "got null", id="artwork-name-null"
    ),
    pytest.param(
        (*ARTWORK_0, "name"), "", f"{ARTWORK_0_PATH}.name", "at least 1 character",
        id="artwork-name-empty",
    ),
    # clientUrl
    pytest.param(
        (*ARTWORK_0, "clientUrl"), MISSING, f"{ARTWORK_0_PATH}.clientUrl", REQUIRED,
        id="client-url-missing",
    ),
    pytest.param(
        (*ARTWORK_0, "clientUrl"), 5, f"{ARTWORK_0_PATH}.clientUrl", "got a number",
        id="client-url-number",
    ),
    pytest.param(
        (*ARTWORK_0, "clientUrl"), {"href": "https://example.test/a"},
        f"{ARTWORK_0_PATH}.clientUrl", "got an object", id="client-url-object",
    ),
    pytest.param(
        (*ARTWORK_0, "clientUrl"), ["https://example.test/a"],
        f"{ARTWORK_0_PATH}.clientUrl", "got an array", id="client-url-list",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("location", "value", "path", "reason"), CONSOLIDATION_CASES)
def test_parse_consolidation_invalid_field(
    location: tuple[str | int, ...], value: Any, path: str, reason: str
) -> None:
    """A required field missing or of the wrong type raises PayloadError at its exact JSON path."""
    error = payload_error(changed(consolidation_job(), location, value))

    assert error.path == path
    assert reason in error.reason
    assert str(error) == f"{path}: {error.reason}"


ARTWORK_JOB_CASES = [
    pytest.param(
        ("artwork", "artwork.png"), ARTWORK_URL, "$.artwork['artwork.png']", "got a string",
        id="urls-string",
    ),
    pytest.param(
        ("artwork", "artwork.png"), {"url": ARTWORK_URL}, "$.artwork['artwork.png']",
        "got an object", id="urls-object",
    ),
    pytest.param(
        ("artwork", "artwork.png", 0), 5, "$.artwork['artwork.png'][0]", "got a number",
        id="url-number",
    ),
    pytest.param(
        ("artwork", "artwork.png"), [S3_URL], "$.artwork['artwork.png']", "no http(s) URL",
        id="only-s3-url",
    ),
    pytest.param(
        ("artwork", "artwork.png"), [], "$.artwork['artwork.png']", "no http(s) URL", id="no-url"
    ),
    pytest.param(
        ("items", 1, "batch_job_id"), 1234, "$.items[1].batch_job_id",
        "is 1234 but the job id is 9972081", id="batch-job-id-mismatch",
    ),
    pytest.param(
        ("items", 1, "batch_job_id"), "9972081", "$.items[1].batch_job_id", "got a string",
        id="batch-job-id-string",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("location", "value", "path", "reason"), ARTWORK_JOB_CASES)
def test_parse_artwork_job_invalid_field(
    location: tuple[str | int, ...], value: Any, path: str, reason: str
) -> None:
    """An invalid job-level artwork or batch id raises PayloadError at its exact JSON path."""
    error = payload_error(changed(artwork_job(), location, value))

    assert error.path == path
    assert reason in error.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param([], "got an array", id="array"),
        pytest.param("job", "got a string", id="string"),
        pytest.param(9972198, "got a number", id="number"),
        pytest.param(None, "got null", id="null"),
    ],
)
def test_parse_top_level_not_object(data: Any, reason: str) -> None:
    """A body that is not a JSON object raises PayloadError at "$"."""
    error = payload_error(data)

    assert error.path == "$"
    assert "expected a JSON object" in error.reason
    assert reason in error.reason


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("s3://bucket/art.png", id="s3"),
        pytest.param("ftp://example.test/art.png", id="ftp"),
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("example.test/art.png", id="no-scheme"),
    ],
)
def test_parse_client_url_not_http(url: str) -> None:
    """A clientUrl that is not http(s) raises PayloadError that shows the URL."""
    data = changed(consolidation_job(), ("items", 1, "order_item", "artwork", 0, "clientUrl"), url)

    error = payload_error(data)

    assert error.path == "$.items[1].order_item.artwork[0].clientUrl"
    assert "http(s) URL" in error.reason
    assert repr(url) in error.reason


def test_parse_artwork_name_blank() -> None:
    """A job-level artwork file name of only spaces raises PayloadError naming it."""
    data = {"id": 7, "artwork": {"  ": [ARTWORK_URL]}, "items": []}

    error = payload_error(data)

    assert error.path == "$.artwork['  ']"
    assert "empty" in error.reason


def test_parse_too_many_items() -> None:
    """A job with MAX_ITEMS + 1 items raises PayloadError at "$.items"."""
    items = [minimal_item(index) for index in range(kornitx.MAX_ITEMS + 1)]

    error = payload_error({"id": 7, "artwork": None, "items": items})

    assert error.path == "$.items"
    assert str(kornitx.MAX_ITEMS) in error.reason


def test_parse_max_items_accepted() -> None:
    """A job with exactly MAX_ITEMS items is valid."""
    items = [minimal_item(index) for index in range(kornitx.MAX_ITEMS)]

    job = kornitx.parse_job({"id": 7, "artwork": None, "items": items})

    assert len(job.items) == kornitx.MAX_ITEMS


def test_parse_unknown_fields_ignored() -> None:
    """Fields the platform may add later are ignored."""
    data = changed(consolidation_job(), ("items", 1, "order_item", "new_field"), {"any": "thing"})
    data["new_top_level_field"] = [1, 2, 3]

    job = kornitx.parse_job(data)

    assert len(kornitx.plan(job)) == 2


def test_json_path_quotes_keys() -> None:
    """json_path writes identifiers with a dot and other keys quoted in brackets."""
    assert kornitx.json_path(("items", 0, "order_item", "id")) == "$.items[0].order_item.id"
    assert kornitx.json_path(("artwork", "art.png", 1)) == "$.artwork['art.png'][1]"
    assert kornitx.json_path(("artwork", "it's.png")) == "$.artwork['it\\'s.png']"
