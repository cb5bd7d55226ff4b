"""Code columns read back from the file's text: NA as a two-letter code."""

from __future__ import annotations

from pathlib import Path

from tabship import datasets


def test_na_among_letter_codes_is_the_code_not_a_gap(tmp_path: Path) -> None:
    rows = [f"{code},{i}" for i, code in enumerate(["NA", "EU", "AS", "NA", "", "EU"] * 5)]
    (tmp_path / "codes.csv").write_text("continent,y\n" + "\n".join(rows) + "\n")
    frame = datasets.read_table(tmp_path / "codes.csv")
    assert frame["continent"].head(6).tolist()[:4] == ["NA", "EU", "AS", "NA"]
    assert frame["continent"].isna().sum() == 5  # the blank cells are the gaps
    assert frame.attrs[datasets.NOTES] == [
        "10 rows of 'continent' hold 'NA' among letter codes; kept as the code NA (North "
        "America, Namibia), not missing: blank those cells if they mean unknown"
    ]
    # Among words, or codes of three letters, or in R's export (strings quoted, NA bare),
    # NA is the missing value, as before.
    (tmp_path / "words.csv").write_text("city,y\nParis,1\nNA,2\nRome,3\n")
    assert datasets.read_table(tmp_path / "words.csv")["city"].isna().sum() == 1
    (tmp_path / "usd.csv").write_text("cur,y\nUSD,1\nNA,2\nEUR,3\n")
    assert datasets.read_table(tmp_path / "usd.csv")["cur"].isna().sum() == 1
    r_rows = "".join(
        f'"{c}",{i}\n' if c != "NA" else f"NA,{i}\n" for i, c in enumerate(["US", "NA", "UK"] * 3)
    )
    (tmp_path / "r.csv").write_text('"country","y"\n' + r_rows)
    assert datasets.read_table(tmp_path / "r.csv")["country"].isna().sum() == 3


def test_na_among_us_state_codes_is_missing(tmp_path: Path) -> None:
    rows = "".join(f"{c},{i}\n" for i, c in enumerate(["CA", "NA", "TX"] * 4))
    (tmp_path / "states.csv").write_text("state,y\n" + rows)
    frame = datasets.read_table(tmp_path / "states.csv")
    assert frame["state"].isna().sum() == 4 and frame.attrs[datasets.NOTES] == []
