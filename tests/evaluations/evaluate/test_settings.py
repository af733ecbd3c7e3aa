"""One description of the options (``config.SETTINGS``): the CLI's options and ``evaluate_model``'s keywords are
built from it or checked against it, so neither gains an option the other lacks without a stated reason."""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

from stochdef.evaluations.cli import evaluate as cli_evaluate
from stochdef.evaluations.evaluate import SETTINGS, EvalConfig, build_config, evaluate_model
from stochdef.evaluations.evaluate.config import API_ONLY, FIELDS

POSITIONAL = {"model", "x", "y"}  # evaluate_model's model and data


def _cli_options() -> dict[str, list[str]]:
    parser = argparse.ArgumentParser()
    cli_evaluate.add_arguments(parser)
    return {a.dest: list(a.option_strings) for a in parser._actions if a.dest != "help"}


def test_every_cli_option_is_a_setting_and_every_setting_with_flags_is_an_option() -> None:
    options = _cli_options()
    assert set(options) == {s.name for s in SETTINGS if s.flags}
    for s in SETTINGS:
        assert options[s.name] == list(s.flags)


def test_evaluate_model_takes_exactly_the_api_settings() -> None:
    keywords = set(inspect.signature(evaluate_model).parameters)
    assert keywords == {s.name for s in SETTINGS if s.api} | set(API_ONLY) | POSITIONAL


def test_a_setting_on_one_side_only_says_why() -> None:
    for s in SETTINGS:
        if not (s.api and s.flags):
            assert s.why, f"{s.name} is on one side only and does not say why"
    assert all(reason for reason in API_ONLY.values())
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)


def test_every_config_field_is_a_setting_or_derived() -> None:
    """A config field is an option, or derived from the options (``source``: the fingerprint of the caller's
    weights and data; ``samples_cap``'s pair ``samples``; ``surrogates``, ``certificates``: what the defenses
    declare)."""
    derived = {"source", "surrogates", "certificates"}
    assert {f.name for f in dataclasses.fields(EvalConfig)} == ({s.name for s in SETTINGS} & FIELDS) | derived


def test_the_cli_and_the_api_build_the_same_config() -> None:
    """The same settings through the CLI's parser and through build_config give one config."""
    args = argparse.ArgumentParser()
    cli_evaluate.add_arguments(args)
    parsed = args.parse_args(["--attack", "pgd,square", "--eps", "0.1,0.2", "--samples", "auto", "--steps", "7",
                              "--restarts", "2", "--queries", "50", "--block", "4", "--device", "cpu"])  # fmt: skip
    from_cli = cli_evaluate.build_from_args(parsed)
    from_api = build_config(attacks=("pgd", "square"), eps=(0.1, 0.2), samples="auto", steps=7, restarts=2,
                            queries=50, block=4, device="cpu")  # fmt: skip
    assert from_cli == from_api
    with pytest.raises(TypeError, match="unknown setting"):
        build_config(epsilon=0.1)
