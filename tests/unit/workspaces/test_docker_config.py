"""The ``docker:`` section of a template: validation at push time, parameters filled in and
limits parsed at build time (:mod:`tether.workspaces.backends.dockerconfig`)."""

from __future__ import annotations

import pytest

from tether.errors import InvalidInput
from tether.workspaces.backends.dockerconfig import resolve
from tether.workspaces.template_parse import parse_template

TEMPLATE = """
name: boxed
backend: docker
parameters:
  - {name: memory, default: "512m"}
  - {name: image, default: "tether-workspace:bookworm"}
docker:
  image: "{{ image }}"
  cpus: 1.5
  memory: "{{ memory }}"
  pids: 256
  env: {EDITOR: vi, DEPTH: 3}
  network_mode: none
"""


def test_template_docker_section_is_stored_and_resolved() -> None:
    spec = parse_template(TEMPLATE)
    assert spec.docker is not None
    raw = spec.docker.model_dump(mode="json")
    assert raw["cpus"] == "1.5" and raw["pids"] == "256" and raw["env"]["DEPTH"] == "3"
    config = resolve(raw, {"memory": "1g", "image": "img:2"}, "default:1")
    assert config.image == "img:2"
    assert config.nano_cpus == 1_500_000_000
    assert config.memory_bytes == 1 << 30
    assert config.pids_limit == 256
    assert config.env == {"EDITOR": "vi", "DEPTH": "3"}
    assert config.network_mode == "none"


def test_a_reference_to_an_undeclared_parameter_is_a_template_error() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_template("name: t\nbackend: docker\ndocker:\n  memory: '{{ mem }}'\n")
    assert info.value.field == "docker.memory"
    assert "mem" in info.value.message


def test_unknown_docker_keys_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_template("name: t\ndocker:\n  privileged: true\n")
    assert info.value.field == "docker.privileged"


def test_defaults_no_limits_no_network_default_image() -> None:
    config = resolve({}, {}, "tether-workspace:bookworm")
    assert config.image == "tether-workspace:bookworm"
    assert (config.nano_cpus, config.memory_bytes, config.pids_limit) == (None, None, None)
    assert config.network_mode == "none"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"cpus": "lots"}, "docker.cpus"),
        ({"cpus": "0"}, "docker.cpus"),
        ({"cpus": "nan"}, "docker.cpus"),
        ({"memory": "1x"}, "docker.memory"),
        ({"memory": "1k"}, "docker.memory"),  # below the engine's minimum
        ({"pids": "2"}, "docker.pids"),
        ({"pids": "1.5"}, "docker.pids"),
        ({"image": "-v /:/host"}, "docker.image"),
        ({"network_mode": "container:other"}, "docker.network_mode"),
        ({"env": {"TETHER_AGENT_TOKEN": "x"}}, "docker.env.TETHER_AGENT_TOKEN"),
        ({"env": {"BAD NAME": "x"}}, "docker.env.BAD NAME"),
    ],
)
def test_bad_values_are_typed_errors_naming_the_field(raw: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput) as info:
        resolve(raw, {}, "img")
    assert info.value.field == field


def test_a_parameter_value_cannot_smuggle_in_another_setting() -> None:
    """A parameter fills one value; it cannot add keys or escape into the command line."""
    config = resolve({"env": {"A": "{{ p }}"}}, {"p": "x\nB=y"}, "img")
    assert config.env == {"A": "x\nB=y"}
    with pytest.raises(InvalidInput):
        resolve({"image": "{{ p }}"}, {"p": "img --privileged"}, "img")
