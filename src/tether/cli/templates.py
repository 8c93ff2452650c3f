"""``tether templates push|list|show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tether.cli.common import CliError, JsonOpt, run
from tether.cli.output import Output
from tether.sdk import Template, TetherClient

app = typer.Typer(help="Manage workspace templates.", no_args_is_help=True)


@app.command("push")
def push(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Template YAML file.")],
    json_mode: JsonOpt = False,
) -> None:
    """Create a template, or a new version of it, from a YAML file (admins only)."""

    async def body(client: TetherClient, out: Output) -> int:
        try:
            source = file.read_text()
        except OSError as exc:
            raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
        template = await client.push_template(source)
        if out.json_mode:
            out.json(template)
        else:
            out.line(f"pushed template {template.name} version {template.active_version}")
        return 0

    run(ctx, json_mode, body)


@app.command("list")
def list_templates(ctx: typer.Context, json_mode: JsonOpt = False) -> None:
    """List templates."""

    async def body(client: TetherClient, out: Output) -> int:
        templates = await client.list_templates()
        if out.json_mode:
            out.json(templates)
        elif not templates:
            out.line("no templates yet: push one with `tether templates push FILE`")
        else:
            out.table(
                ["NAME", "BACKEND", "DESCRIPTION", "DEPRECATED"],
                [
                    (t.name, t.backend, t.description, "yes" if t.deprecated else "")
                    for t in templates
                ],
            )
        return 0

    run(ctx, json_mode, body)


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Template name or id.")],
    json_mode: JsonOpt = False,
) -> None:
    """Show a template and its parameters."""

    async def body(client: TetherClient, out: Output) -> int:
        template = await client.get_template(name)
        if out.json_mode:
            out.json(template)
        else:
            _print_template(out, template)
        return 0

    run(ctx, json_mode, body)


def _print_template(out: Output, t: Template) -> None:
    spec: dict[str, Any] = t.spec or {}
    out.fields(
        [
            ("name", t.name),
            ("display name", t.display_name),
            ("description", t.description),
            ("backend", t.backend),
            ("version", t.active_version if t.active_version is not None else "-"),
            ("deprecated", "yes" if t.deprecated else "no"),
            ("agents", ", ".join(str(a.get("name")) for a in spec.get("agents", []) or [])),
        ]
    )
    params = spec.get("parameters") or []
    if params:
        out.line("")
        out.table(
            ["PARAMETER", "TYPE", "DEFAULT", "MUTABLE", "DESCRIPTION"],
            [
                (
                    p.get("name"),
                    p.get("type"),
                    p.get("default"),
                    "yes" if p.get("mutable") else "no",
                    p.get("description", ""),
                )
                for p in params
            ],
        )
