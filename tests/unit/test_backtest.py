"""Backtesting through the pure core, and the backtest command on a file."""

from __future__ import annotations

from click.testing import CliRunner

from funnel.backtest import changes, replay
from funnel.config import default_model_text, load_model, parse_model
from streams.cli import main
from streams.cli.model import read_history
from tests.unit.helpers import at, command, event, identify

MODEL = load_model()
DEFAULT_TEXT = default_model_text()
STRICT = parse_model(DEFAULT_TEXT.replace("or_signals: [high_intent]", "or_signals: []")
                     .replace('version: "1"', 'version: "2"'))


def history():
    return [identify(lead="a"), event(name="Content Downloaded", lead="a", when=at(1)),
            identify(lead="b"), *(event(name="Demo Requested", lead="b", when=at(2 + i))
                                  for i in range(3)),
            command("won", lead="b", when=at(9), amount=10.0), command("lost", lead="a")]


def test_replay_gives_the_stages_and_handoffs_and_counts_refusals():
    r = replay(history(), MODEL)
    assert {k: v.stage for k, v in r.leads.items()} == {"a": "mql", "b": "customer"}
    assert r.handoffs == {"mql": 2, "sql": 1, "customer": 1}
    assert r.refused == 1                      # 'lost' is not allowed from mql


def test_a_stricter_model_lists_the_leads_that_would_change():
    moved = changes(replay(history(), MODEL), replay(history(), STRICT))
    assert [(c.lead_id, c.current, c.candidate) for c in moved] == [("a", "mql", "iql")]


def test_backtest_command_compares_two_models_on_a_simulated_history(tmp_path):
    runner = CliRunner()
    hist, strict = tmp_path / "history.jsonl", tmp_path / "strict.yaml"
    strict.write_text(DEFAULT_TEXT.replace("or_signals: [high_intent]", "or_signals: []"))
    result = runner.invoke(main, ["simulate", "--leads", "80", "--out", str(hist)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["backtest", "--model", str(strict), "--events", str(hist)],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    messages, bad = read_history(hist)
    expected = changes(replay(messages, MODEL), replay(messages, STRICT))
    assert len(expected) > 0 and bad == 2          # simulate writes a few malformed lines
    assert f"{len(expected)} leads would end at a different stage" in result.output
    assert f"{bad} invalid lines skipped" in result.output
    assert expected[0].lead_id in result.output
    bad = runner.invoke(main, ["backtest", "--model", str(strict)])
    assert bad.exit_code == 2 and "exactly one of --events FILE or --from-topic" in bad.output


def test_cli_errors_name_the_problem(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["explain", "x"], env={"FUNNEL_DATABASE_URL": "not a url"})
    assert r.exit_code == 1 and "cannot read the leads table" in r.output
    r = runner.invoke(main, ["worker"], env={"FUNNEL_BROKER": "", "FUNNEL_DATABASE_URL": ""})
    assert r.exit_code == 2 and "needs FUNNEL_BROKER and FUNNEL_DATABASE_URL" in r.output
    r = runner.invoke(main, ["simulate"], env={"FUNNEL_PARTITIONS": "many"})
    assert r.exit_code == 2 and "FUNNEL_PARTITIONS" in r.output
    bad = tmp_path / "m.yaml"
    bad.write_text("name: x\n")
    r = runner.invoke(main, ["model", "check", str(bad)])
    assert r.exit_code == 1 and f"{bad}: interest: Field required" in r.output
