"""Avro types inferred from sent values, and schema files edited as small diffs."""

from __future__ import annotations

import difflib
import json
from typing import Any

import pytest

from cxone_pipeline.registry.avsc_text import edit_fields, format_schema
from cxone_pipeline.registry.inference import (
    Inference,
    Naming,
    Observed,
    canonical_field,
    snake_case,
    writer_field,
)
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR


def infer(*values: Any, enums: frozenset[str] = frozenset()) -> tuple[Any, Any, bool]:
    """(writer type, canonical type, lenient) of a field `f` that carried `values`."""
    seen = Observed()
    for value in values:
        seen.add(value)
    typed = Inference(Naming({"CallEvent"}), enums).learn({"f": seen})["f"]
    return typed.writer, typed.canonical, typed.lenient


@pytest.mark.parametrize(
    ("values", "writer", "canonical"),
    [
        ((1, -(2**31), 2**31 - 1), "int", "long"),
        ((1, 2**31), "long", "long"),
        ((1, 2.5), "double", "double"),
        ((True, False), "boolean", "boolean"),
        (("a", "b"), "string", "string"),
        (
            ("2026-11-29T09:00:00Z", "2026-11-29 09:00:00.123+01:00"),
            {"type": "string", "logicalType": "iso-timestamp-millis"},
            {"type": "long", "logicalType": "timestamp-millis"},
        ),
        (
            ("2026-11-29T09:00:00.123456Z", "2026-11-29T09:00:00Z"),
            {"type": "string", "logicalType": "iso-timestamp-micros"},
            {"type": "long", "logicalType": "timestamp-micros"},
        ),
        (("2026-11-29T09:00:00", "2026-11-29T09:00:00Z"), "string", "string"),  # no zone
        (([1, 2], []), {"type": "array", "items": "int"}, {"type": "array", "items": "long"}),
        (([], []), {"type": "array", "items": "string"}, {"type": "array", "items": "string"}),
        (
            ([1, None],),
            {"type": "array", "items": ["null", "int"]},
            {"type": "array", "items": ["null", "long"]},
        ),
        (
            ({"en": 1}, {"fr": 2}, {"de": 3}),
            {"type": "map", "values": "int"},
            {"type": "map", "values": "long"},
        ),
        (
            ({"agent-1": "a"},),
            {"type": "map", "values": "string"},
            {"type": "map", "values": "string"},
        ),
        ((None, None), "string", "string"),
    ],
)
def test_types_follow_the_values(values: tuple, writer: Any, canonical: Any) -> None:
    assert infer(*values)[:2] == (writer, canonical)


def test_nested_objects_become_records_with_optional_fields_where_absent() -> None:
    writer, canonical, _ = infer({"id": 1, "name": "Sales"}, {"id": 2, "name": None}, {"id": 3})
    assert writer == {
        "type": "record",
        "name": "F",
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "name", "type": ["null", "string"], "default": None},
        ],
    }
    assert canonical == {
        "type": "record",
        "name": "F",
        "fields": [
            {"name": "id", "type": ["null", "long"], "default": None},
            {"name": "name", "type": ["null", "string"], "default": None},
        ],
    }


def test_numeric_text_with_numbers_is_a_lenient_number() -> None:
    assert infer(5, "1,234", "7") == ("long", "long", True)
    assert infer(5, "1.5") == ("double", "double", True)
    assert infer(True, "false") == ("boolean", "boolean", True)


def test_mixed_kinds_keep_the_majority_and_name_the_rest() -> None:
    seen = Observed()
    for value in (1, 2, "x"):
        seen.add(value)
    typed = Inference(Naming(set())).learn({"f": seen})["f"]
    assert (typed.writer, typed.problems) == ("int", ("f: 1 string value(s) where 2 are numbers",))


def test_enums_only_when_asked() -> None:
    assert infer("INBOUND", "OUTBOUND")[0] == "string"
    enum = {"type": "enum", "name": "F", "symbols": ["INBOUND", "OUTBOUND"]}
    assert infer("OUTBOUND", "INBOUND", enums=frozenset({"f"}))[:2] == (enum, enum)
    assert infer("in bound", enums=frozenset({"f"}))[0] == "string"  # not an Avro symbol


def test_names_of_records_never_reuse_the_registrys() -> None:
    naming = Naming({"Queue"})
    assert naming.name(("queue",)) == "Queue2"
    assert naming.name(("queue",)) == "Queue2"  # one name per path
    assert naming.name(("call", "legs", "item")) == "CallLegsItem"


def test_fields_are_snake_case_with_the_senders_spelling_as_alias() -> None:
    assert [snake_case(n) for n in ("contactStartDate", "SkillID", "URLPath", "csat")] == [
        "contact_start_date",
        "skill_id",
        "url_path",
        "csat",
    ]
    seen = Observed()
    seen.add("x")
    typed = Inference(Naming(set())).learn({"wrapUpCode": seen})["wrapUpCode"]
    assert writer_field("wrapUpCode", typed, nullable=True) == {
        "name": "wrapUpCode",
        "type": ["null", "string"],
        "default": None,
    }
    assert canonical_field("wrapUpCode", typed) == {
        "name": "wrap_up_code",
        "type": ["null", "string"],
        "default": None,
        "aliases": ["wrapUpCode"],
    }


def test_an_edited_schema_file_keeps_its_other_lines() -> None:
    document = json.loads((DEFAULT_SCHEMAS_DIR / "call_event" / "canonical.avsc").read_text())
    for field in document["fields"]:  # one line per field: docs would wrap them
        field.pop("doc", None)
    text = format_schema(document)
    document["fields"][0]["aliases"].append("customerRef")
    document["fields"].append({"name": "csat", "type": ["null", "double"], "default": None})
    edited = edit_fields(text, document)
    assert json.loads(edited) == document
    old, new = text.splitlines(), edited.splitlines()
    removed = [line[2:] for line in difflib.ndiff(old, new) if line.startswith("- ")]
    assert removed == [old[6], old[-3]]  # customer_id, and tags that gains a comma
    assert new[6] == (
        '    {"name": "customer_id", "type": "string", "aliases": ["customerId", "customerRef"]},'
    )
    assert new[-3:] == [
        '    {"name": "csat", "type": ["null", "double"], "default": null}',
        "  ]",
        "}",
    ]


def test_a_schema_that_cannot_be_edited_in_place_is_formatted_anew() -> None:
    document = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    renamed = {**document, "name": "S"}
    assert edit_fields(json.dumps(document), renamed) == format_schema(renamed)
    assert format_schema(renamed) == (
        '{\n  "type": "record",\n  "name": "S",\n  "fields": [\n'
        '    {"name": "a", "type": "int"}\n  ]\n}\n'
    )
