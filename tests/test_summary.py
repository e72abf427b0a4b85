"""The Table-1 report: computed figures, the paper's misprints flagged, totals."""

import pytest

from inception import create_model, summary


@pytest.fixture(scope="module")
def paper_report():
  return summary.build_report(create_model("paper"), 224)


def test_flags_exactly_the_known_misprints(paper_report):
  flagged = {row.name: row.flags for row in paper_report.rows if row.flags}
  # docs/paper_notes.md, "Table 1 and its misprints": conv1, 4c params, 5a params and ops do not follow from Table 1's columns.
  assert flagged == {
      "conv1": ["params", "ops"],
      "inception_4c": ["params"],
      "inception_5a": ["params", "ops"],
  }


def test_self_consistent_rows_reproduce(paper_report):
  rows = {row.name: row for row in paper_report.rows}
  assert rows["conv2"].cost.weights == 64 * 64 + 9 * 64 * 192
  assert rows["inception_3a"].cost.weights == 163_328  # 159.5K in Table 1 units
  assert round(rows["inception_3a"].cost.macs / 1e6) == 128
  assert round(rows["inception_3b"].cost.macs / 1e6) == 304
  assert rows["classifier"].cost.weights == 1024 * 1000


def test_total_multiply_adds_near_paper(paper_report):
  total = paper_report.total.macs
  assert abs(total - 1.5e9) <= 0.06 * 1.5e9
  assert paper_report.total_with_aux.macs > total


def test_totals_with_and_without_aux(paper_report):
  aux_params = sum(row.cost.params for row in paper_report.aux_rows)
  assert paper_report.total_with_aux.params == paper_report.total.params + aux_params
  assert paper_report.total.params == 6_998_552


def test_output_sizes_and_channel_columns(paper_report):
  rows = {row.name: row for row in paper_report.rows}
  assert rows["pool5"].output == (1, 1, 1024) and rows["pool5"].patch == "7x7/1"
  assert rows["inception_4e"].channels == (256, 160, 320, 32, 128, 128)
  assert rows["conv2"].channels[1:3] == (64, 192)


def test_cli_prints_every_table_row(capsys):
  summary.print_report(variant="torchvision")
  text = capsys.readouterr().out
  for label in (
      "inception (3a)",
      "inception (5b)",
      "max pool",
      "avg pool",
      "linear",
      "softmax",
      "aux head (4d)",
      "6,624,904",
      "2x2/2",
  ):
    assert label in text, label
