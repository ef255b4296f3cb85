"""The KornitX Generic API production push: payload schema, validation and planning.

A push carries one batch job. An *artwork processing* job has a job-level `artwork` object that
maps a file name to a list of URLs; a *consolidation* job has `"artwork": null` at job level and a
list of artwork objects on each order item. Each artwork file becomes one planned delivery.
Fields the platform may add later are ignored; the fields read here are required and typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from .errors import PayloadError

JobKind = Literal["artwork_processing", "consolidation"]

# Big enough for any real batch, small enough that one push cannot exhaust the journal.
MAX_ITEMS = 20_000
MAX_ARTWORK_PER_ITEM = 100
MAX_URLS = 20


# SQLite stores 64-bit signed integers; a larger id could never be written to the journal.
Id = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
# Free text is stored; longer than this is not a real description but a hostile body.
Text = Annotated[StrictStr, Field(max_length=10_000)]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class Order(_Schema):
    id: Any = None
    ref: Text | None = None
    external_ref: Text | None = None
    shipping_country_code: Text | None = None
    shipping_carrier: Text | None = None
    shipping_method: Text | None = None


class ItemArtwork(_Schema):
    name: StrictStr = Field(min_length=1, max_length=1024)
    ext: StrictStr | None = Field(None, max_length=16)
    clientUrl: StrictStr = Field(min_length=1, max_length=8192)  # noqa: N815 - the platform's name
    nameSansExt: StrictStr | None = None  # noqa: N815 - the platform's name
    isThumbnail: StrictBool | None = None  # noqa: N815 - the platform's name


class OrderItem(_Schema):
    id: Id
    type: StrictInt | None = None
    sku: Text | None = None
    mapped_sku: Text | None = None
    description: Text | None = None
    quantity: StrictInt | None = None
    artwork: list[ItemArtwork] | None = Field(None, max_length=MAX_ARTWORK_PER_ITEM)


class Item(_Schema):
    id: Id
    order_item_id: Id
    batch_job_id: StrictInt | None = None
    series_number: StrictInt | None = None
    series_total: StrictInt | None = None
    order: Order | None = None
    order_item: OrderItem


class Job(_Schema):
    id: Annotated[StrictInt, Field(gt=0, le=2**63 - 1)]
    artwork: dict[str, list[StrictStr]] | None
    items: list[Item] = Field(max_length=MAX_ITEMS)

    @property
    def kind(self) -> JobKind:
        return "artwork_processing" if self.artwork is not None else "consolidation"


@dataclass(frozen=True)
class PlannedDelivery:
    """One artwork file of a job, before it is routed and named.

    `key` identifies the file within its job across re-pushes. `attributes` are the routing
    match keys taken from the payload (the Quick P keys are added by routing).
    """

    key: str
    position: int
    artwork_name: str
    url: str
    ext: str
    item_id: int | None
    order_item_id: int | None
    attributes: dict[str, str] = field(default_factory=dict)


def parse_job(data: Any) -> Job:
    """Validate a decoded JSON body as a KornitX job; raises PayloadError naming the field."""
    if not isinstance(data, dict):
        raise PayloadError("$", f"expected a JSON object for the job, got {_json_type(data)}")
    try:
        job = Job.model_validate(data)
    except ValidationError as error:
        raise _first_problem(error) from None
    _check_batch_ids(job)
    _check_job_artwork(job)
    return job


def plan(job: Job) -> list[PlannedDelivery]:
    """Return one planned delivery per artwork file, in payload order.

    Job-level artwork uses the first http(s) URL of its list (`s3://` URLs are skipped) and the
    routing attributes of the first item. Item artwork is each artwork object of each item; the
    same name twice on one item is one file.
    """
    if job.artwork is not None:
        return _plan_job_artwork(job)
    return _plan_item_artwork(job)


def _plan_job_artwork(job: Job) -> list[PlannedDelivery]:
    assert job.artwork is not None
    attributes = _attributes(job, job.items[0]) if job.items else {"kind": job.kind}
    planned = []
    for position, (name, urls) in enumerate(job.artwork.items()):
        url = next(url for url in urls if _is_http(url))
        planned.append(
            PlannedDelivery(
                key=f"job:{name}",
                position=position,
                artwork_name=name,
                url=url,
                ext=_extension(name),
                item_id=None,
                order_item_id=None,
                attributes={**attributes, "ext": _extension(name)},
            )
        )
    return planned


def _plan_item_artwork(job: Job) -> list[PlannedDelivery]:
    planned: list[PlannedDelivery] = []
    seen: set[str] = set()
    for item in job.items:
        for artwork in item.order_item.artwork or []:
            key = f"item:{item.id}:{artwork.name}"
            if key in seen:
                continue
            seen.add(key)
            ext = (artwork.ext or _extension(artwork.name)).lower()
            planned.append(
                PlannedDelivery(
                    key=key,
                    position=len(planned),
                    artwork_name=artwork.name,
                    url=artwork.clientUrl,
                    ext=ext,
                    item_id=item.id,
                    order_item_id=item.order_item_id,
                    attributes={**_attributes(job, item), "ext": ext},
                )
            )
    return planned


def _attributes(job: Job, item: Item) -> dict[str, str]:
    order_item = item.order_item
    order = item.order or Order()
    values = {
        "kind": job.kind,
        "sku": order_item.sku,
        "mapped_sku": order_item.mapped_sku,
        "description": order_item.description,
        "type": None if order_item.type is None else str(order_item.type),
        "shipping_country": order.shipping_country_code,
        "shipping_carrier": order.shipping_carrier,
        "shipping_method": order.shipping_method,
        "order_ref": order.ref,
        "external_ref": order.external_ref,
    }
    return {key: value for key, value in values.items() if value is not None}


def _check_batch_ids(job: Job) -> None:
    for index, item in enumerate(job.items):
        if item.batch_job_id is not None and item.batch_job_id != job.id:
            raise PayloadError(
                f"$.items[{index}].batch_job_id",
                f"is {item.batch_job_id} but the job id is {job.id}; "
                "each push must carry one batch job",
            )


def _check_job_artwork(job: Job) -> None:
    if job.artwork is None:
        _check_item_urls(job)
        return
    if len(job.artwork) > MAX_URLS:
        raise PayloadError("$.artwork", f"has {len(job.artwork)} files, at most {MAX_URLS} allowed")
    for name, urls in job.artwork.items():
        path = f"$.artwork[{_quote(name)}]"
        if not name.strip():
            raise PayloadError(path, "the artwork file name is empty")
        if len(urls) > MAX_URLS:
            raise PayloadError(path, f"has {len(urls)} URLs, at most {MAX_URLS} allowed")
        if not any(_is_http(url) for url in urls):
            raise PayloadError(path, "has no http(s) URL to download the artwork from")


def _check_item_urls(job: Job) -> None:
    for item_index, item in enumerate(job.items):
        for artwork_index, artwork in enumerate(item.order_item.artwork or []):
            path = f"$.items[{item_index}].order_item.artwork[{artwork_index}]"
            if not artwork.name.strip():
                raise PayloadError(f"{path}.name", "the artwork file name is blank")
            if not _is_http(artwork.clientUrl):
                raise PayloadError(
                    f"{path}.clientUrl",
                    f"expected an http(s) URL, got {artwork.clientUrl[:200]!r}",
                )


def _is_http(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))


def _extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def _first_problem(error: ValidationError) -> PayloadError:
    problem = error.errors(include_url=False)[0]
    path = json_path(problem["loc"])
    if problem["type"] == "missing":
        return PayloadError(path, "is required but missing")
    got = _json_type(problem.get("input"))
    message = re.sub(r" or instance of \w+", "", problem["msg"])
    return PayloadError(path, f"{message} (got {got})")


def json_path(location: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a JSON path such as `$.items[0].order_item.id`."""
    path = "$"
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier():
            path += f".{part}"
        else:
            path += f"[{_quote(part)}]"
    return path


def _quote(text: str) -> str:
    escaped = text[:200].replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
