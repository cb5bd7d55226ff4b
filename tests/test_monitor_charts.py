"""Server-rendered SVG charts of /monitor: labels escaped and told apart, gaps kept."""

from __future__ import annotations


def test_bar_labels_tell_spaces_apart_and_keep_the_whole_name_on_hover() -> None:
    from tabship.monitor.charts import bars

    long = "=HYPERLINK(" + "x" * 60 + ")<b>"
    svg = bars("kind", ["a", "a ", " a", long], [0.25] * 4, [0.25] * 4)
    quoted = ">&quot;a &quot;</text>", ">&quot; a&quot;</text>"
    assert ">a</text>" in svg and all(label in svg for label in quoted)
    assert f"<title>{long.replace('<', '&lt;').replace('>', '&gt;')}</title>" in svg
    assert "<b>" not in svg


def test_a_line_breaks_where_buckets_have_no_value() -> None:
    from tabship.monitor.charts import line

    svg = line("p50 ms", ["a", "b", "c", "d", "e"], [("p50", [2.0, 3.0, None, None, 4.0])])
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 3  # the lone last point
    assert line("x", ["a", "b"], [("x", [None, None])]).count("<polyline") == 0
