"""One record batch in, its scored rows and its rejects out: the unit every engine runs.

``BatchScorer`` loads the artifact folder once (sha256 checks included, as the service does) and
then turns each record batch into the input's columns plus the answer columns, through the
service's scoring core. The local engine calls it per streamed batch; the Spark engine calls it
per Arrow record batch inside ``mapInArrow``, one ``BatchScorer`` (one ONNX Runtime session) per
Python worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa

from loan_default.batch import rules as checks
from loan_service.artifacts import load_artifacts
from loan_service.predictor import DefaultRiskModel, load_probability_model
from loan_service.scoring import RISK_BANDS, LoanScorer, ScoredBlock
from loan_service.settings import ModelRuntime

REASON_SLOTS: Final = 4  # reason_1_code .. reason_4_code, empty (null) beyond the model's reasons
GRADE_FIELD: Final = pa.field("grade", pa.int16(), nullable=False)  # with a master scale only
BAND_CODES: Final = pa.dictionary(pa.int8(), pa.string())  # risk_band as a code into the bands
REASON_CODES: Final = pa.dictionary(pa.int16(), pa.string())  # a reason as a feature's index


def answer_fields(
    graded: bool, *, coded: bool = False, with_loss: bool = True
) -> tuple[pa.Field, ...]:
    """The answer columns, in order; ``grade`` where the model has a master scale.

    ``coded``: the text columns (risk band, reason codes) are dictionary arrays, the core's own
    indices into the bands and the book's codes (the local engine's files: no string is built per
    row, and Parquet stores them as dictionary pages; they read back as the same text, as
    categoricals in pandas). Plain strings otherwise (Spark's batches). A column that is
    never empty is declared so (no Parquet definition levels to write)."""
    band = BAND_CODES if coded else pa.string()
    code = REASON_CODES if coded else pa.string()
    return (
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("prediction", pa.int8(), nullable=False),
        pa.field("risk_band", band, nullable=False),
        *((GRADE_FIELD,) if graded else ()),
        pa.field("expected_loss", pa.float64(), nullable=not with_loss),
        *(pa.field(f"reason_{slot}_code", code) for slot in range(1, REASON_SLOTS + 1)),
    )


ANSWER_COLUMNS: Final = tuple(f.name for f in answer_fields(graded=True))  # every possible one


def output_schema(input_schema: pa.Schema, answers: Sequence[pa.Field]) -> pa.Schema:
    """The input's columns, in input order, then the answer columns."""
    clash = [name for name in ANSWER_COLUMNS if name in input_schema.names]
    if clash:
        raise checks.InputError(
            f"input column {clash[0]} has the name of an answer column; rename it first"
        )
    return pa.schema([*input_schema, *answers])


# Numpy columns become Arrow arrays over their own buffers: ``pa.array`` would import pandas on
# its first call (0.6 s of CPU here), which scoring a Parquet book never needs otherwise.
_NUMPY_TYPES: Final = {pa.float64(): np.float64, pa.int8(): np.int8, pa.int16(): np.int16}


def arrow_column(
    values: np.ndarray, data_type: pa.DataType, missing: np.ndarray | None = None
) -> pa.Array:
    """``values`` (converted to ``data_type``'s numpy type where needed) as an Arrow array; nulls
    where ``missing``."""
    data = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[data_type])
    validity, null_count = None, 0
    if missing is not None and missing.any():
        validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
        null_count = int(np.count_nonzero(missing))
    return pa.Array.from_buffers(
        data_type, len(data), [validity, pa.py_buffer(data)], null_count=null_count
    )


def text_array(values: Sequence[str]) -> pa.Array:
    """A small string array (the bands, the reason codes) built from its buffers."""
    data = [value.encode() for value in values]
    offsets = np.cumsum([0, *map(len, data)], dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    )


@dataclass(slots=True)
class BandTotals:
    """Loans and expected loss per risk band, summed over the batches scored so far."""

    loans: np.ndarray = field(default_factory=lambda: np.zeros(len(RISK_BANDS), dtype=np.int64))
    expected_loss: np.ndarray = field(default_factory=lambda: np.zeros(len(RISK_BANDS)))

    def add(self, scored: ScoredBlock) -> None:
        band = scored.band.astype(np.intp)  # what bincount converts its input to (once here)
        self.loans += np.bincount(band, minlength=len(RISK_BANDS))
        if scored.expected_loss is not None:
            self.expected_loss += np.bincount(
                band, weights=scored.expected_loss, minlength=len(RISK_BANDS)
            )


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """A batch's valid rows with their answers, its rejects, and how many rows were bad."""

    table: pa.Table
    rejects: pa.Table
    rejected_rows: int
    scored: ScoredBlock


class BatchScorer:
    """The artifact folder's model behind a record-batch interface."""

    def __init__(
        self,
        artifact_dir: Path,
        recovery_rate: float,
        runtime: ModelRuntime = "onnx",
        *,
        coded: bool = False,
    ) -> None:
        bundle = load_artifacts(artifact_dir)
        book = bundle.manifest.book
        model = DefaultRiskModel(load_probability_model(bundle, runtime), bundle.stats)
        self.scorer = LoanScorer(
            model,
            bundle.manifest.threshold,
            recovery_rate,
            book=book,
            master_scale=bundle.master_scale,
        )
        self.answer_fields = answer_fields(
            graded=bundle.master_scale is not None,
            coded=coded,
            with_loss=book.loss.exposure is not None,
        )
        self.coded = coded
        self.answer_columns = tuple(f.name for f in self.answer_fields)
        self.model_version = bundle.manifest.model_version
        self.rules = checks.rules_of(book)  # the manifest's schema, as the API's request models
        self._bands = text_array(RISK_BANDS)
        self._codes = text_array(self.scorer.reason_codes)

    def check_schema(self, schema: pa.Schema) -> pa.Schema:
        """The output schema for this input; ``InputError`` when it cannot be scored."""
        checks.check_schema(schema, self.rules)
        return self.output_schema(schema)

    def score(self, batch: pa.RecordBatch | pa.Table, row_numbers: np.ndarray) -> ScoredBatch:
        """Check, score and append the answers; ``row_numbers`` are the rows' 1-based numbers."""
        checked = checks.check_columns(batch, self.rules, row_numbers)
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        raw = checked.raw
        rejected_rows = int(np.count_nonzero(checked.bad))
        if rejected_rows:
            keep = ~checked.bad
            table = table.filter(pa.array(keep))
            raw = raw[keep]
        scored = self.scorer.score(raw, "declined")
        table = self._typed_features(table, raw)
        return ScoredBatch(
            table=self.answer_table(table, scored),
            rejects=checked.rejects,
            rejected_rows=rejected_rows,
            scored=scored,
        )

    def _typed_features(self, table: pa.Table, raw: np.ndarray) -> pa.Table:
        """Feature columns read as text (CSV) go out as the numbers the model scored."""
        for j, rule in enumerate(self.rules):
            index = table.schema.get_field_index(rule.name)
            data_type = table.schema.field(index).type
            if rule.categories is not None or not (
                pa.types.is_string(data_type) or pa.types.is_large_string(data_type)
            ):
                continue
            values = raw[:, j]
            column = pa.array(values.astype(np.int64)) if rule.integer else pa.array(values)
            table = table.set_column(index, rule.name, column)
        return table

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """The output's schema: text features (CSV) become the numbers the model scored, and
        every feature column is non-null (a missing value is a reject, never an output row: no
        Parquet definition levels to write for it)."""
        fields = []
        for input_field in input_schema:
            rule = next((r for r in self.rules if r.name == input_field.name), None)
            text = pa.types.is_string(input_field.type) or pa.types.is_large_string(
                input_field.type
            )
            if rule is None:
                fields.append(input_field)
            elif rule.categories is None and text:
                number = pa.int64() if rule.integer else pa.float64()
                fields.append(pa.field(input_field.name, number, nullable=False))
            else:
                fields.append(input_field.with_nullable(False))
        return output_schema(pa.schema(fields), self.answer_fields)

    def answer_table(self, table: pa.Table, scored: ScoredBlock) -> pa.Table:
        """``table`` (the valid rows, features typed) with the answer columns appended, in the
        output schema."""
        schema = self.output_schema(table.schema)
        n_rows = len(scored)
        expected_loss = scored.expected_loss
        band = arrow_column(scored.band, pa.int8())
        columns: list[pa.Array] = [
            arrow_column(scored.probability, pa.float64()),
            arrow_column(scored.prediction, pa.int8()),
            pa.DictionaryArray.from_arrays(band, self._bands)
            if self.coded
            else self._bands.take(band),
            *(() if scored.grade is None else (arrow_column(scored.grade, pa.int16()),)),
            pa.nulls(n_rows, pa.float64())
            if expected_loss is None
            else arrow_column(expected_loss, pa.float64()),
            *self._reason_columns(scored),
        ]
        return pa.Table.from_arrays([*table.columns, *columns], schema=schema)

    def _reason_columns(self, scored: ScoredBlock) -> Sequence[pa.Array]:
        slots = scored.reasons.shape[1]
        code_type = self.answer_fields[-1].type
        columns = []
        for slot in range(REASON_SLOTS):
            if slot >= slots:
                columns.append(pa.nulls(len(scored), code_type))
                continue
            index = scored.reasons[:, slot]
            used = arrow_column(index, pa.int16(), missing=index < 0)
            if self.coded:
                columns.append(pa.DictionaryArray.from_arrays(used, self._codes))
            else:
                columns.append(self._codes.take(used))
        return columns
