"""Kornit Quick P file names: parse them, render name templates, and make names safe for a share.

A Quick P name carries print settings for the RIP in fields separated by ``_``, for example
``AV HD6 Black HQ_64021_Hoodies Full Size_71128135-output-3950663_1_14_116.png``: setup, setup
id, pallet, artwork name, copies, X offset, Y offset. KornitX documents an offset as a distance
in mm from a point on the pallet. Nothing in this module does I/O.
"""

import functools
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from string import Formatter


@dataclass(frozen=True)
class QuickPName:
    """The fields of a Quick P file name, as text taken verbatim from the name unless noted."""

    setup: str
    """Quick P setup, e.g. ``AV HD6 Black HQ``."""

    setup_id: str
    """Numeric id after the setup, e.g. ``64021``. Its meaning is unknown, so it stays text."""

    pallet: str
    """Pallet (table), e.g. ``Hoodies Full Size``."""

    artwork: str
    """Artwork name, never empty, e.g. ``71128135-output-3950663``."""

    copies: int
    """Number of copies to print."""

    x: int
    """X offset in mm, possibly negative."""

    y: int
    """Y offset in mm, possibly negative."""

    ext: str
    """Extension in lower case without the dot, or ``""`` when the name has none."""


_MIN_FIELDS = 7

# Counts and offsets have at most 9 digits, because a longer run is not a plausible value. The
# cap also keeps int() far below its default limit of 4300 digits, past which it raises ValueError.
_UNSIGNED = re.compile(r"[0-9]{1,9}")
_SIGNED = re.compile(r"-?[0-9]{1,9}")
_SETUP_ID = re.compile(r"[0-9]+")

# An extension is ASCII letters and digits only, so "a_1_b_art.v2_1_2_3" reads as a name without
# an extension rather than as the extension "v2_1_2_3".
_EXTENSION = re.compile(r"[A-Za-z0-9]+")


# Routing and naming both parse each name of a push; a push can carry 20,000 of them.
@functools.lru_cache(maxsize=4096)
def parse(name: str) -> QuickPName | None:
    """Parse a Quick P file name, or return None when the name does not have that shape.

    The stem is split at every ``_`` and read from both ends. Setup, setup id and pallet are the
    first three fields, and copies, X and Y the last three. The artwork name is everything in
    between. Free-text fields should not contain ``_``, so a stem with more than seven fields is
    read with the extra fields joined back into the artwork name, which leaves setup and pallet
    intact for routing. Setup, pallet and artwork must be non-empty. The setup id and copies are
    unsigned integers, and X and Y integers with an optional ``-``.
    """
    stem, ext = _split_extension(name)
    fields = stem.split("_")
    if len(fields) < _MIN_FIELDS:
        return None

    setup, setup_id, pallet = fields[:3]
    artwork = "_".join(fields[3:-3])
    copies, x, y = fields[-3:]

    if not (setup and pallet and artwork):
        return None
    if not (_SETUP_ID.fullmatch(setup_id) and _UNSIGNED.fullmatch(copies)):
        return None
    if not (_SIGNED.fullmatch(x) and _SIGNED.fullmatch(y)):
        return None

    return QuickPName(
        setup=setup,
        setup_id=setup_id,
        pallet=pallet,
        artwork=artwork,
        copies=int(copies),
        x=int(x),
        y=int(y),
        ext=ext.lower(),
    )


def _split_extension(name: str) -> tuple[str, str]:
    """Split ``name`` into stem and extension without the dot. A leading dot starts no extension."""
    stem, dot, ext = name.rpartition(".")
    if dot and stem and _EXTENSION.fullmatch(ext):
        return stem, ext
    return name, ""


# ---------------------------------------------------------------------------------------------
# Name templates

_TEMPLATE_FIELD_ORDER = (
    "name",
    "stem",
    "ext",
    "job_id",
    "item_id",
    "order_item_id",
    "order_ref",
    "external_ref",
    "sku",
    "mapped_sku",
    "printer",
    "setup",
    "pallet",
    "copies",
    "x",
    "y",
    "index",
)

TEMPLATE_FIELDS: frozenset[str] = frozenset(_TEMPLATE_FIELD_ORDER)
"""Placeholders that a name template may use, each written as ``{field}``."""

_ALLOWED_PLACEHOLDERS = ", ".join("{" + field + "}" for field in _TEMPLATE_FIELD_ORDER)

_TemplatePart = tuple[str, str | None, str | None, str | None]


@functools.lru_cache(maxsize=256)
def check_template(template: str) -> None:
    """Raise ValueError unless ``template`` is valid for render().

    A valid template is non-empty and uses only plain placeholders such as ``{job_id}_{name}``,
    each naming a field of TEMPLATE_FIELDS. Positional placeholders, attribute or index access,
    conversions and format specs are rejected because a value formatted that way could raise or
    read data other than the field. Literal braces are written ``{{`` and ``}}``. The message
    names the bad placeholder and lists the allowed ones.
    """
    if not template:
        raise ValueError(
            "invalid name template '': it is empty, so every file would get the same name. "
            f"Use a placeholder such as {{name}}. Allowed placeholders: {_ALLOWED_PLACEHOLDERS}."
        )

    for _literal, field, spec, conversion in _parse_template(template):
        if field is None:
            continue

        placeholder = _placeholder_text(field, spec, conversion)
        problem = _placeholder_problem(field, spec, conversion)
        if problem:
            raise ValueError(
                f"invalid placeholder {placeholder} in name template {template!r}: {problem}. "
                f"Allowed placeholders: {_ALLOWED_PLACEHOLDERS}."
            )


def render(template: str, fields: Mapping[str, object]) -> str:
    """Fill the placeholders of ``template`` from ``fields``.

    Raises ValueError as check_template() does. A field that ``fields`` lacks, or maps to None,
    renders as empty text. Keys outside TEMPLATE_FIELDS are ignored. The result can contain any
    character that the values contain, so it is not a safe file name until it goes through
    safe_name().
    """
    check_template(template)

    parts: list[str] = []
    for literal, field, _spec, _conversion in _parse_template(template):
        parts.append(literal)
        if field is not None:
            value = fields.get(field)
            parts.append("" if value is None else str(value))
    return "".join(parts)


def _parse_template(template: str) -> list[_TemplatePart]:
    try:
        return list(Formatter().parse(template))
    except ValueError as error:
        raise ValueError(
            f"invalid name template {template!r}: {error}. Write a literal brace as {{{{ or }}}}."
        ) from error


def _placeholder_text(field: str, spec: str | None, conversion: str | None) -> str:
    text = field
    if conversion:
        text += "!" + conversion
    if spec:
        text += ":" + spec
    return "{" + text + "}"


def _placeholder_problem(field: str, spec: str | None, conversion: str | None) -> str | None:
    if field == "" or field.isdigit():
        return "positional placeholders are not allowed, name a field"
    if "." in field or "[" in field:
        return "attribute and index access are not allowed"
    if field not in TEMPLATE_FIELDS:
        return f"unknown field {field!r}"
    if conversion:
        return "conversions such as !r are not allowed"
    if spec:
        return "format specs are not allowed"
    return None


# ---------------------------------------------------------------------------------------------
# Safe file names

# NAME_MAX of Linux filesystems. Windows allows 255 UTF-16 code units per name, which 255 UTF-8
# bytes never exceed because every UTF-16 code unit takes at least one UTF-8 byte.
# NOTE: a RIP that opens files through the legacy Win32 API is limited to 260 characters for the
# whole path (MAX_PATH), so a name near this limit may still fail in a deep hot folder.
_NAME_MAX_BYTES = 255

# Characters that Windows rejects in file names, ASCII control characters, and lone surrogates
# (valid in a Python str and in JSON, but not encodable as UTF-8). Each becomes "-", never "_",
# because "_" separates Quick P fields. "/" and "\" are among them, so no path separator remains.
_INVALID_CHARACTERS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f\ud800-\udfff]')

# Windows device names, reserved in every folder and with any extension ("NUL.tar.gz" is NUL).
# Windows counts the superscript digits ¹ ² ³ as digits in COM and LPT names. The list follows
# Microsoft's page "Naming Files, Paths, and Namespaces" and adds the console names.
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {prefix + digit for prefix in ("COM", "LPT") for digit in "0123456789¹²³"}
)


def safe_name(name: str, fallback: str = "artwork") -> str:
    """Make ``name`` a file name that is safe to create in a hot folder on a Windows share.

    The steps, in order:

    - Normalise to Unicode NFC.
    - Replace each of ``<>:"/\\|?*``, ASCII control characters and lone surrogates with ``-``.
      A path becomes one flat name: ``../x`` gives ``-.-x`` and ``C:\\x`` gives ``C--x``. Every
      part of the path is kept, because it may be the only part that distinguishes two artworks.
    - Strip whitespace at both ends and dots at the end. Windows drops trailing dots and spaces
      silently, so the file would not get the recorded name. ``.`` and ``..`` strip to nothing.
    - Replace a leading dot with ``-``, because a dot file is hidden and a RIP may skip it.
    - Append ``-`` to a Windows device name: ``CON.png`` gives ``CON-.png`` and ``con .png``
      gives ``con- .png``.
    - Cut a name longer than 255 UTF-8 bytes in the middle, on a character boundary. The cut
      keeps the extension, and for a Quick P name also setup, setup id, pallet and the trailing
      ``_copies_x_y``, so only the artwork field shrinks.

    ``_`` is kept. When nothing usable remains, the result is ``fallback``, which must itself be
    a non-empty safe name, or ValueError is raised. safe_name() is idempotent.
    """
    if not fallback or _sanitize(fallback) != fallback:
        raise ValueError(
            f"invalid fallback file name {fallback!r}: it must be non-empty and unchanged by "
            "safe_name(), for example 'artwork'"
        )

    return _sanitize(name) or fallback


def _sanitize(name: str) -> str:
    """Apply the steps of safe_name(), returning "" when nothing usable remains."""
    text = unicodedata.normalize("NFC", name)
    text = _INVALID_CHARACTERS.sub("-", text)

    text = _strip_trailing(text.lstrip())
    if not text:
        return ""

    if text.startswith("."):
        text = "-" + text[1:]

    text = _avoid_device_name(text)
    return _shorten(text)


def _strip_trailing(text: str) -> str:
    """Strip trailing dots and whitespace with a loop, because a regex backtracks on dot runs."""
    end = len(text)
    while end and (text[end - 1] == "." or text[end - 1].isspace()):
        end -= 1
    return text[:end]


def _avoid_device_name(text: str) -> str:
    # Windows ignores the extension and spaces before it, so "con .png" is the device CON.
    device = text.split(".", 1)[0].rstrip()
    if device.upper() not in _DEVICE_NAMES:
        return text
    return device + "-" + text[len(device) :]


def _shorten(text: str) -> str:
    if _utf8_length(text) <= _NAME_MAX_BYTES:
        return text

    for head, middle, tail in _shortening_plans(text):
        room = _NAME_MAX_BYTES - _utf8_length(head) - _utf8_length(tail)
        shortened = _cut_utf8(middle, room)
        if not shortened:
            continue

        # Cutting can turn "CON   x.png" into "CON.png", so check the device names again.
        candidate = _avoid_device_name(head + shortened + tail)
        if _utf8_length(candidate) <= _NAME_MAX_BYTES:
            return candidate

    # No plan left room for the middle, so cut the whole name. One byte stays free for the "-"
    # of a device name. The cut is never empty because the name starts with a character that
    # is neither whitespace nor a dot, which the cut keeps.
    return _avoid_device_name(_cut_utf8(text, _NAME_MAX_BYTES - 1))


def _shortening_plans(text: str) -> Iterator[tuple[str, str, str]]:
    """Yield (head, middle, tail) splits of ``text``, best first. Only the middle gets cut."""
    quickp = parse(text)
    if quickp is not None:
        head = f"{quickp.setup}_{quickp.setup_id}_{quickp.pallet}_"
        yield head, quickp.artwork, text[len(head) + len(quickp.artwork) :]

    stem, ext = _split_extension(text)
    if ext:
        yield "", stem, "." + ext


def _cut_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes on a character boundary.

    Trailing dots and whitespace left at the cut are stripped too.
    """
    if max_bytes <= 0:
        return ""

    # The encoded text is valid UTF-8 up to the cut, so "ignore" drops only a character that
    # the cut split.
    cut = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    return _strip_trailing(cut)


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8"))
