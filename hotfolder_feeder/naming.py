"""File names in the hot folder: the printer's template, then made safe for a Windows share."""

from __future__ import annotations

from . import quickp
from .config import PrinterSettings
from .kornitx import PlannedDelivery


def file_name(printer: PrinterSettings, delivery: PlannedDelivery, job_id: int) -> str:
    """Render the printer's template for a delivery and make the result a safe file name.

    Item artwork uses `name_template`, job-level artwork `job_artwork_template`. When the result
    lacks the artwork's extension it is appended, because QuickP chooses its reader by extension.
    """
    template = printer.name_template if delivery.item_id is not None else printer.job_artwork_template
    rendered = quickp.render(template, template_fields(printer, delivery, job_id))
    if delivery.ext and not rendered.lower().endswith(f".{delivery.ext}"):
        rendered = f"{rendered}.{delivery.ext}"
    return quickp.safe_name(rendered)


def template_fields(printer: PrinterSettings, delivery: PlannedDelivery, job_id: int) -> dict[str, object]:
    name = delivery.artwork_name
    stem = name[: -len(delivery.ext) - 1] if delivery.ext and name.lower().endswith(f".{delivery.ext}") else name
    fields: dict[str, object] = {
        "name": name,
        "stem": stem,
        "ext": delivery.ext,
        "job_id": job_id,
        "item_id": delivery.item_id,
        "order_item_id": delivery.order_item_id,
        "order_ref": delivery.attributes.get("order_ref"),
        "external_ref": delivery.attributes.get("external_ref"),
        "sku": delivery.attributes.get("sku"),
        "mapped_sku": delivery.attributes.get("mapped_sku"),
        "printer": printer.name,
        "index": delivery.position + 1,
    }
    parsed = quickp.parse(name)
    if parsed is not None:
        fields.update(
            setup=parsed.setup, pallet=parsed.pallet, copies=parsed.copies, x=parsed.x, y=parsed.y
        )
    return {key: value for key, value in fields.items() if value is not None}
