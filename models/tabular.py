"""What every import of a file shares: row errors that name line and column, a refusal that
lists them all (and changes nothing), and reading a CSV with a header row.

CSV contract (DESIGN.md): UTF-8 with or without BOM, a header row, columns by name; the
header is line 1; errors name the line and the column, never the value (it may be personal).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

MAX_REPORTED = 50
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RowError:
    where: str  # "line 7" (CSV), "index 6" (JSON) or "file"
    column: str | None
    problem: str

    @classmethod
    def at(cls, line: int, column: str | None, problem: str) -> RowError:
        return cls(f"line {line}", column, problem)

    @property
    def line(self) -> int | None:
        head, _, number = self.where.partition(" ")
        return int(number) if head == "line" and number.isdigit() else None

    def __str__(self) -> str:
        col = f", column {self.column}" if self.column else ""
        return f"{self.where}{col}: {self.problem}"


class RefusedFile(ValueError):
    """A file was refused and nothing changed; `errors` lists every problem found."""

    what = "file"

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:MAX_REPORTED])
        more = f" (and {len(errors) - MAX_REPORTED} more)" if len(errors) > MAX_REPORTED else ""
        super().__init__(f"{self.what} refused, nothing changed: {shown}{more}")


@dataclass(frozen=True)
class CsvRow:
    line: int
    values: dict[str, str]  # stripped, by column name
    error: RowError | None = None  # the row's shape is wrong (values is then empty)


@dataclass(frozen=True)
class CsvFile:
    header: list[str]
    rows: Iterator[CsvRow]  # blank lines skipped


def read_csv(data: bytes | str, *, required: Sequence[str], refuse: type[RefusedFile]) -> CsvFile:
    """Open a CSV; raises `refuse` when the file cannot be read or a required column is
    missing. A row with more or fewer fields than the header comes with its error, so the
    caller can list every problem of the file at once."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise refuse([RowError("file", None, "the file is not UTF-8 text")]) from None
    else:
        text = data.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise refuse([RowError.at(1, None, "the file is empty (a header row is needed)")]) from None
    except csv.Error as exc:
        raise refuse([RowError.at(1, None, f"not readable as CSV: {exc}")]) from None
    missing = [c for c in required if c not in header]
    if missing:
        raise refuse([RowError.at(1, c, "column missing from the header") for c in missing])

    def rows() -> Iterator[CsvRow]:
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # A field over the csv module's limit (128 KB) or a broken quote: the line
                # is refused with its number, and reading goes on after it.
                line = reader.line_num
                yield CsvRow(line, {}, RowError.at(line, None, f"not readable as CSV: {exc}"))
                continue
            # line_num counts physical lines, so quoted newlines keep the numbers right.
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                problem = f"{len(values)} fields, the header has {len(header)}"
                yield CsvRow(line, {}, RowError.at(line, None, problem))
                continue
            yield CsvRow(line, {k: v.strip() for k, v in zip(header, values, strict=True)})

    return CsvFile(header=header, rows=rows())
