"""Names the protocol, the CLI and the harness share are defined once (issue 10): the harness
states and the cage backends."""

from __future__ import annotations

from typing import get_args

import click

from hyperhive import protocol
from hyperhive.cages import BACKENDS, CageChoice
from hyperhive.cli import main
from hyperhive.harness import loop


def test_the_harness_reports_only_the_states_the_protocol_accepts() -> None:
    assert vars(loop)["STATES"] is protocol.HARNESS_STATES  # loop.set_state checks against it
    assert set(protocol.HARNESS_STATES) == set(get_args(protocol.HarnessState))


def test_the_cli_offers_exactly_the_cage_backends_there_are() -> None:
    serve = main.get_command(click.Context(main), "serve")
    assert serve is not None
    (cage,) = [p for p in serve.params if p.name == "cage"]
    assert isinstance(cage.type, click.Choice)
    assert list(cage.type.choices) == list(get_args(CageChoice))
    assert set(get_args(CageChoice)) == {"auto", *BACKENDS}
