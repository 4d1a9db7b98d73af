"""`make bench` writes its figures into docs/BENCHMARKS.md between markers, keeping the hand-written rest,
and draws them; the verdict next to each figure follows its target's direction."""

from __future__ import annotations

from pathlib import Path

from bench.common import Figure
from bench.report import BEGIN, END, chart, section, table, write_markdown

FIGURES = [
    Figure("ingest", "one event per request", 2_500, "req/s", target=2_000, reference=5_000, reference_label="ref"),
    Figure("ingest", "NDJSON batches", 40_000, "events/s", target=50_000),
    Figure("fanout", "p99", 300, "ms", target=250, higher_is_better=False, reference=60_000, reference_label="market"),
    Figure("restart", "restart", 4.5, "s", target=10, higher_is_better=False),
]


def test_each_figure_is_judged_against_its_target_in_its_direction() -> None:
    assert [f.met for f in FIGURES] == [True, False, False, True]
    assert FIGURES[0].ratio == 0.5
    rows = table(FIGURES).splitlines()[2:]
    assert (
        rows[0] == "| ingest | one event per request | 2,500 req/s | ≥ 2,000 req/s | yes | 5,000 req/s (ref) | 0.500 |"
    )
    assert rows[2].startswith("| fanout | p99 | 300 ms | ≤ 250 ms | **no** |")
    assert rows[3] == "| restart | restart | 4.5 s | ≤ 10 s | yes | — | — |"


def test_the_generated_section_is_replaced_and_the_hand_written_text_kept(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nHand-written analysis.\n")
    write_markdown(doc, section(FIGURES[:1], "make bench", "first", "c.png"))
    write_markdown(doc, section(FIGURES[1:], "make bench", "second", "c.png"))
    text = doc.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "second" in text and "first" not in text
    assert "NDJSON batches" in text and "one event per request" not in text
    assert text.startswith("# Benchmarks\n") and text.rstrip().endswith("Hand-written analysis.")


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    out = tmp_path / "chart.png"
    chart(FIGURES, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


def test_a_ratio_just_below_a_target_does_not_round_up_to_it() -> None:
    just_below = Figure("scoring", "alone", 69_465, "events/s", reference=280_998, reference_label="raw")
    assert just_below.ratio_text == "0.247"
    assert "ratio 0.247" in just_below.line()
    assert Figure("fanout", "memory", 28.8, "KiB", reference=15.1, reference_label="bare").ratio_text == "1.91"
    assert Figure("x", "no reference", 1.0, "s").ratio_text == "—"
