"""Checks of the templates task options take (``"charge:{order_id}"``), at decoration time.

Filling a template from a call's arguments is
:func:`sandbox_platform.coordination.governor.resolve_resource`.
"""

from __future__ import annotations

import string

from sandbox_platform.guards.base import OptionContext

__all__ = ["check_template", "template_fields"]


def template_fields(template: str) -> set[str]:
    """The argument names (or positions) a template refers to."""
    fields = set()
    for _literal, field, _spec, _conv in string.Formatter().parse(template):
        if field is not None:
            fields.add(field.split(".", 1)[0].split("[", 1)[0])
    return fields


def check_template(context: OptionContext, option: str, template: object) -> str:
    """``template`` if every field names an argument of the task, else a ValueError."""
    if not isinstance(template, str) or not template:
        raise ValueError(f"{context.task_name}: {option} must be a non-empty string template")
    for field in template_fields(template):
        if not field.isdigit() and field not in context.params:
            raise ValueError(
                f"{context.task_name}: {option} {template!r} names {field!r}, which is not an "
                f"argument of the task (arguments: {', '.join(context.params) or 'none'})"
            )
    return template
