import json
import re
import unicodedata
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotfolder_feeder.quickp import (
    TEMPLATE_FIELDS,
    QuickPName,
    check_template,
    parse,
    render,
    safe_name,
)

EXAMPLE = "AV HD6 Black HQ_64021_Hoodies Full Size_71128135-output-3950663_1_14_116.png"
QUICKP_HEAD = "AV HD6 Black HQ_64021_Hoodies Full Size_"

WINDOWS_INVALID = set('<>:"/\\|?*') | {chr(code) for code in range(0x20)} | {"\x7f"}

# Written out here rather than imported, so the tests check the module against an independent list.
DEVICE_NAMES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    prefix + digit for prefix in ("COM", "LPT") for digit in "0123456789\u00b9\u00b2\u00b3"
}


def example_artwork_names() -> list[str]:
    path = resources.files("hotfolder_feeder") / "examples" / "consolidation-job.json"
    job = json.loads(path.read_text(encoding="utf-8"))
    return [
        artwork["name"] for item in job["items"] for artwork in item["order_item"]["artwork"]
    ]


def is_device_name(name: str) -> bool:
    return name.split(".", 1)[0].rstrip().upper() in DEVICE_NAMES


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# parse


def test_parse_consolidation_examples() -> None:
    """Both artwork names of the example consolidation job parse into their fields."""
    names = example_artwork_names()

    assert names == [
        "AV HD6 Black HQ_64021_Hoodies Full Size_71128134-output-3950663_1_16_129.png",
        "AV HD6 Black HQ_64021_Hoodies Full Size_71128135-output-3950663_1_14_116.png",
    ]
    assert parse(names[0]) == QuickPName(
        setup="AV HD6 Black HQ",
        setup_id="64021",
        pallet="Hoodies Full Size",
        artwork="71128134-output-3950663",
        copies=1,
        x=16,
        y=129,
        ext="png",
    )
    assert parse(names[1]) == QuickPName(
        setup="AV HD6 Black HQ",
        setup_id="64021",
        pallet="Hoodies Full Size",
        artwork="71128135-output-3950663",
        copies=1,
        x=14,
        y=116,
        ext="png",
    )


def test_parse_negative_offsets() -> None:
    """X and Y may carry a minus sign."""
    parsed = parse("Setup_1_Pallet_art_2_-5_-120.pdf")

    assert parsed is not None
    assert parsed.copies == 2
    assert parsed.x == -5
    assert parsed.y == -120


def test_parse_extra_fields_join_artwork() -> None:
    """Fields beyond seven belong to the artwork name, joined with "_"."""
    parsed = parse("Setup_1_Pallet_art_with_underscores_3_0_7.jpg")

    assert parsed is not None
    assert parsed.setup == "Setup"
    assert parsed.pallet == "Pallet"
    assert parsed.artwork == "art_with_underscores"
    assert parsed.copies == 3
    assert parsed.x == 0
    assert parsed.y == 7


def test_parse_extension_lower_case() -> None:
    """The extension comes back in lower case and without the dot."""
    parsed = parse("Setup_1_Pallet_art_1_2_3.PNG")

    assert parsed is not None
    assert parsed.ext == "png"


def test_parse_no_extension() -> None:
    """A name without an extension still parses, with ext empty."""
    parsed = parse("Setup_1_Pallet_art_1_2_3")

    assert parsed is not None
    assert parsed.artwork == "art"
    assert parsed.y == 3
    assert parsed.ext == ""


def test_parse_dotted_field_not_extension() -> None:
    """A dot followed by text with "_" is part of a field, not an extension."""
    parsed = parse("Setup_1_Pallet_art.v2_1_2_3")

    assert parsed is not None
    assert parsed.artwork == "art.v2"
    assert parsed.ext == ""


@pytest.mark.parametrize(
    "name",
    [
        "artwork.png",
        "Setup_1_Pallet_1_2_3.png",
        "Setup_1_Pallet_art_1_2_x.png",
        "Setup_1_Pallet_art_one_2_3.png",
        "Setup_1_Pallet_art_1_2.5_3.png",
        "Setup_1_Pallet_art_1_+2_3.png",
        "Setup_1_Pallet_art_-1_2_3.png",
        "Setup_1_Pallet_art_1_2_116png",
        "Setup_1_Pallet_art_1_2_3.",
        "Setup_id_Pallet_art_1_2_3.png",
        "Setup__Pallet_art_1_2_3.png",
        "_1_Pallet_art_1_2_3.png",
        "Setup_1__art_1_2_3.png",
        "Setup_1_Pallet__1_2_3.png",
        "Setup_1_Pallet_art_1_2_\u0663.png",
        "Setup_1_Pallet_art_1_2_" + "9" * 5000 + ".png",
        "",
    ],
)
def test_parse_rejects_other_shapes(name: str) -> None:
    """A name that does not have the Quick P shape returns None."""
    assert parse(name) is None


# ---------------------------------------------------------------------------------------------
# Templates


def test_template_fields_list() -> None:
    """TEMPLATE_FIELDS contains exactly the documented placeholders."""
    assert TEMPLATE_FIELDS == {
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
    }


@pytest.mark.parametrize(
    "template",
    [
        "{name}",
        "{job_id}_{name}",
        "{{literal}}_{name}",
        "fixed.png",
        "_".join("{" + field + "}" for field in sorted(TEMPLATE_FIELDS)),
    ],
)
def test_check_template_accepts(template: str) -> None:
    """Plain placeholders from TEMPLATE_FIELDS and escaped braces are valid."""
    check_template(template)


@pytest.mark.parametrize(
    ("template", "placeholder", "reason"),
    [
        ("{}", "{}", "positional"),
        ("x_{0}", "{0}", "positional"),
        ("{:>3}", "{:>3}", "positional"),
        ("{name.x}", "{name.x}", "attribute and index access"),
        ("{name[0]}", "{name[0]}", "attribute and index access"),
        ("{name.__class__}", "{name.__class__}", "attribute and index access"),
        ("{job_id}_{name:>30}", "{name:>30}", "format specs"),
        ("{name!r}", "{name!r}", "conversions"),
        ("{job}_{name}", "{job}", "unknown field 'job'"),
        ("{Name}", "{Name}", "unknown field 'Name'"),
    ],
)
def test_check_template_rejects_placeholder(template: str, placeholder: str, reason: str) -> None:
    """A bad placeholder raises ValueError naming it, the reason and the allowed fields."""
    with pytest.raises(ValueError) as raised:
        check_template(template)

    message = str(raised.value)
    assert f"invalid placeholder {placeholder} " in message
    assert reason in message
    for field in TEMPLATE_FIELDS:
        assert "{" + field + "}" in message


@pytest.mark.parametrize("template", ["{name", "name}", "{name!}", ""])
def test_check_template_rejects_malformed(template: str) -> None:
    """Unbalanced braces and an empty template raise ValueError quoting the template."""
    with pytest.raises(ValueError) as raised:
        check_template(template)

    assert f"invalid name template {template!r}" in str(raised.value)


def test_render_fills_fields() -> None:
    """render() substitutes each placeholder with the field's text."""
    fields = {"job_id": 9972198, "name": "flat.png", "index": 0}

    assert render("{job_id}_{name}", fields) == "9972198_flat.png"
    assert render("{index}-{name}", fields) == "0-flat.png"


def test_render_missing_field_empty() -> None:
    """A field absent from the mapping, or None, renders as empty text."""
    assert render("{job_id}_{sku}_{name}", {"name": "a.png"}) == "__a.png"
    assert render("{external_ref}{name}", {"name": "a.png", "external_ref": None}) == "a.png"


def test_render_literal_braces() -> None:
    """Escaped braces render as single literal braces."""
    assert render("{{x}}_{name}", {"name": "a.png"}) == "{x}_a.png"


def test_render_rejects_bad_template() -> None:
    """render() raises the same ValueError as check_template()."""
    with pytest.raises(ValueError, match="unknown field 'nmae'"):
        render("{nmae}", {"name": "a.png"})


def test_render_leaves_values_unsafe() -> None:
    """render() keeps separators in values, so callers must pass its output to safe_name()."""
    rendered = render("{job_id}_{name}", {"job_id": 1, "name": "../a.png"})

    assert rendered == "1_../a.png"
    assert safe_name(rendered) == "1_..-a.png"


# ---------------------------------------------------------------------------------------------
# safe_name: characters


def test_safe_name_keeps_quickp_name() -> None:
    """A valid Quick P name comes back unchanged, underscores included."""
    for name in example_artwork_names():
        assert safe_name(name) == name


@pytest.mark.parametrize("character", list('<>:"/\\|?*'))
def test_safe_name_windows_invalid_character(character: str) -> None:
    """Each character that Windows rejects becomes "-"."""
    assert safe_name(f"a{character}b.png") == "a-b.png"


def test_safe_name_control_characters() -> None:
    """Every ASCII control character becomes "-", also where it would be stripped as whitespace."""
    for code in [*range(0x20), 0x7F]:
        character = chr(code)

        assert safe_name(f"a{character}b.png") == "a-b.png", f"U+{code:04X} inside"
        assert safe_name(f"{character}ab.png") == "-ab.png", f"U+{code:04X} at the start"


def test_safe_name_lone_surrogate() -> None:
    """A lone surrogate, which UTF-8 cannot encode, becomes "-"."""
    result = safe_name("art\ud800work.png")

    assert result == "art-work.png"
    assert utf8_length(result) == 12


def test_safe_name_nfc() -> None:
    """A decomposed "é" is composed into one code point."""
    result = safe_name("Cafe\u0301.png")

    assert result == "Caf\u00e9.png"
    assert len(result) == 8
    assert unicodedata.is_normalized("NFC", result)


# ---------------------------------------------------------------------------------------------
# safe_name: paths


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../x.png", "-.-x.png"),
        ("..\\x.png", "-.-x.png"),
        ("../../etc/passwd", "-.-..-etc-passwd"),
        ("/etc/passwd", "-etc-passwd"),
        ("C:\\x.png", "C--x.png"),
        ("C:x.png", "C-x.png"),
        ("\\\\server\\share\\x.png", "--server-share-x.png"),
        ("\\\\?\\C:\\x.png", "----C--x.png"),
        ("dir/sub/x.png", "dir-sub-x.png"),
    ],
)
def test_safe_name_flattens_path(name: str, expected: str) -> None:
    """A path becomes one flat name with no separator."""
    assert safe_name(name) == expected


def test_safe_name_stays_in_folder(tmp_path: Path) -> None:
    """A file created under each hostile name lands directly in the hot folder."""
    hotfolder = tmp_path / "hot"
    hotfolder.mkdir()
    names = [
        "../escape.png",
        "..\\escape.png",
        "/etc/passwd",
        "C:\\Windows\\x.png",
        "\\\\server\\share\\x.png",
        "..",
        ".",
        "",
        "./.hidden",
        "a/../../b",
    ]

    for name in names:
        path = hotfolder / safe_name(name)
        path.write_bytes(b"x")

        assert path.resolve().parent == hotfolder.resolve(), name

    created = {entry.name for entry in hotfolder.iterdir()}
    assert created == {safe_name(name) for name in names}
    assert not (tmp_path / "escape.png").exists()


# ---------------------------------------------------------------------------------------------
# safe_name: Windows rules


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CON", "CON-"),
        ("con.png", "con-.png"),
        ("Nul.tar.gz", "Nul-.tar.gz"),
        ("CON .png", "CON- .png"),
        ("PRN ", "PRN-"),
        ("AUX.", "AUX-"),
        ("COM0", "COM0-"),
        ("com1.png", "com1-.png"),
        ("LPT9.pdf", "LPT9-.pdf"),
        ("COM\u00b9.png", "COM\u00b9-.png"),
        ("lpt\u00b3", "lpt\u00b3-"),
        ("CONIN$.txt", "CONIN$-.txt"),
        ("conout$", "conout$-"),
        ("CON:stream", "CON-stream"),
    ],
)
def test_safe_name_device_names(name: str, expected: str) -> None:
    """A Windows device name, with or without extension or trailing space, gets a "-"."""
    result = safe_name(name)

    assert result == expected
    assert not is_device_name(result)


@pytest.mark.parametrize(
    "name",
    ["CONSOLE.png", "COM10.png", "COM\u2074.png", "xCON.png", "CON_64021_Pallet_art_1_2_3.png"],
)
def test_safe_name_other_names_not_devices(name: str) -> None:
    """Names that only resemble a device name stay unchanged."""
    assert safe_name(name) == name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("name.png.", "name.png"),
        ("name.png ", "name.png"),
        ("name. . .", "name"),
        ("  name.png  ", "name.png"),
        ("name.png\u3000", "name.png"),
        ("name .png", "name .png"),
        ("a . b.png", "a . b.png"),
    ],
)
def test_safe_name_trailing_dots_spaces(name: str, expected: str) -> None:
    """Dots and whitespace at the end, and whitespace at the start, are stripped."""
    assert safe_name(name) == expected


@pytest.mark.parametrize(("name", "expected"), [(".hidden", "-hidden"), (".png", "-png")])
def test_safe_name_leading_dot(name: str, expected: str) -> None:
    """A leading dot becomes "-", so the file is not hidden."""
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["", ".", "..", "...", "   ", " . . ", "\u3000"])
def test_safe_name_empty_uses_fallback(name: str) -> None:
    """A name that strips to nothing becomes the fallback."""
    assert safe_name(name) == "artwork"
    assert safe_name(name, fallback="job-9972198.png") == "job-9972198.png"


@pytest.mark.parametrize("fallback", ["", "..", "a/b", "CON", ".hidden", "x" * 300])
def test_safe_name_rejects_unsafe_fallback(fallback: str) -> None:
    """A fallback that is not itself a safe name raises ValueError."""
    with pytest.raises(ValueError, match="invalid fallback file name"):
        safe_name("name.png", fallback=fallback)


# ---------------------------------------------------------------------------------------------
# safe_name: length


def test_safe_name_long_keeps_extension() -> None:
    """A name over 255 bytes is cut on a character boundary and keeps its extension."""
    result = safe_name("\u00e9" * 200 + ".png")

    assert result == "\u00e9" * 125 + ".png"
    assert utf8_length(result) == 254


def test_safe_name_long_emoji() -> None:
    """Four-byte characters are never split."""
    result = safe_name("\U0001f600" * 100 + ".jpg")

    assert result == "\U0001f600" * 62 + ".jpg"
    assert utf8_length(result) == 252


def test_safe_name_long_no_extension() -> None:
    """A long name without extension is cut to at most 255 bytes of whole characters."""
    result = safe_name("\u4f5c" * 200)

    assert utf8_length(result) <= 255
    assert result == "\u4f5c" * (utf8_length(result) // 3)
    assert len(result) >= 84


def test_safe_name_long_quickp_keeps_fields() -> None:
    """Only the artwork of a long Quick P name shrinks, and the name still parses."""
    name = QUICKP_HEAD + "\u4f5c" * 100 + "_1_-14_116.png"

    result = safe_name(name)
    parsed = parse(result)

    assert utf8_length(result) <= 255
    assert result.startswith(QUICKP_HEAD)
    assert result.endswith("_1_-14_116.png")
    assert parsed is not None
    assert parsed.setup == "AV HD6 Black HQ"
    assert parsed.setup_id == "64021"
    assert parsed.pallet == "Hoodies Full Size"
    assert parsed.copies == 1
    assert parsed.x == -14
    assert parsed.y == 116
    assert parsed.ext == "png"
    assert parsed.artwork
    assert set(parsed.artwork) == {"\u4f5c"}


def test_safe_name_cut_strips_dots_spaces() -> None:
    """A cut that ends on a dot or space drops it."""
    no_extension = safe_name("x" * 252 + " . " + "y" * 20)
    with_extension = safe_name("x" * 249 + " ." + "y" * 20 + ".png")

    assert no_extension == "x" * 252
    assert with_extension == "x" * 249 + ".png"


def test_safe_name_cut_avoids_device_name() -> None:
    """A cut that leaves a device name in front of the extension still gets the "-"."""
    result = safe_name("CON" + " " * 300 + "x.png")

    assert result == "CON-.png"


def test_safe_name_long_head_cuts_stem() -> None:
    """When setup and pallet leave no room for the artwork, the name is cut before the extension."""
    name = "S" * 300 + "_1_Pallet_art_1_2_3.png"

    result = safe_name(name)

    assert utf8_length(result) <= 255
    assert result == "S" * 251 + ".png"


# ---------------------------------------------------------------------------------------------
# safe_name: idempotence and properties


@pytest.mark.parametrize(
    "name",
    [
        EXAMPLE,
        "../x",
        " CON .png ",
        "COM\u00b9",
        ".. .",
        "Cafe\u0301",
        "\u00e9" * 300,
        "CON" + " " * 300 + "x.png",
        QUICKP_HEAD + "\U0001f600" * 80 + "_1_2_3.png",
        "x" * 252 + " . " + "y" * 20,
    ],
)
def test_safe_name_idempotent(name: str) -> None:
    """Applying safe_name() twice gives the same result as once."""
    once = safe_name(name)

    assert safe_name(once) == once


TRICKY_PIECES = [
    "CON",
    "con",
    "COM\u00b9",
    "LPT0",
    "CONIN$",
    ".",
    "..",
    " ",
    "\u3000",
    "_",
    "/",
    "\\",
    ":",
    "\x00",
    "\x1f",
    "\x7f",
    "\u00e9",
    "e\u0301",
    "\u0301",
    "\ud800",
    ".png",
    "_1_-14_116",
    QUICKP_HEAD,
    "\U0001f600" * 70,
    "\u00e9" * 130,
    "x" * 250,
]

ANY_TEXT = st.lists(
    st.one_of(
        st.text(),
        st.sampled_from(TRICKY_PIECES),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(ANY_TEXT)
def test_safe_name_properties(name: str) -> None:
    """For any text, safe_name() returns a short, plain, non-device, idempotent file name."""
    result = safe_name(name)

    assert isinstance(result, str)
    assert result
    assert utf8_length(result) <= 255
    assert not WINDOWS_INVALID & set(result)
    assert not re.search("[\ud800-\udfff]", result)
    assert result not in (".", "..")
    assert not result.startswith(".")
    assert not is_device_name(result)
    assert not result.endswith((".", " "))
    assert result == result.strip()
    assert unicodedata.is_normalized("NFC", result)
    assert safe_name(result) == result


QUICKP_TEXT = st.text(
    alphabet=st.sampled_from(["a", "Z", "7", " ", "-", ".", "\u00e9", "\u4f5c", "\U0001f600"]),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(
    setup=QUICKP_TEXT.map(lambda text: "S" + text),
    pallet=QUICKP_TEXT.map(lambda text: "P" + text),
    artwork=st.text(alphabet=st.sampled_from(["a", "7", "-", "\u4f5c"]), min_size=1, max_size=300),
    copies=st.integers(min_value=0, max_value=999),
    x=st.integers(min_value=-9999, max_value=9999),
    y=st.integers(min_value=-9999, max_value=9999),
    ext=st.sampled_from(["png", "PDF", "jpg", "tiff", ""]),
)
def test_safe_name_quickp_fields_survive(
    setup: str, pallet: str, artwork: str, copies: int, x: int, y: int, ext: str
) -> None:
    """A Quick P name of any length keeps setup, pallet, copies, offsets and extension."""
    name = f"{setup}_64021_{pallet}_{artwork}_{copies}_{x}_{y}" + (f".{ext}" if ext else "")

    parsed = parse(safe_name(name))

    assert parsed is not None
    assert parsed.setup == setup
    assert parsed.pallet == pallet
    assert parsed.copies == copies
    assert parsed.x == x
    assert parsed.y == y
    assert parsed.ext == ext.lower()
    assert artwork.startswith(parsed.artwork)
