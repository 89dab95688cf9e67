"""Reports from stored runs: markdown tables and figures, reading typed records only.

`write_report(store)` writes REPORT.md (a summary for newcomers, then per
dataset the depth tables and figures and, where an auxiliary-data attack ran
with several aux sizes, its scores against aux size; the defenses, with which
attack each holds against; the authors' comparison).
The authors' reference figures are data (`reference.reference_figures()`).
matplotlib is imported only when a figure is drawn.
"""

from unsplit_tf.reporting.document import REPORT_NAME, summary_paragraph, write_report
from unsplit_tf.reporting.grouping import (
    AuxSeries,
    DefenseGroup,
    InversionSetting,
    Series,
    aux_series,
    defense_groups,
    defense_holds,
    inversion_series,
    undefended_label_runs,
)
from unsplit_tf.reporting.reference import ReferenceFigures, reference_figures
from unsplit_tf.reporting.tables import comparison_table, inversion_table, markdown_table

__all__ = [
    "REPORT_NAME", "AuxSeries", "DefenseGroup", "InversionSetting", "ReferenceFigures", "Series", "aux_series",
    "comparison_table", "defense_groups", "defense_holds", "inversion_series", "inversion_table", "markdown_table",
    "reference_figures", "summary_paragraph", "undefended_label_runs", "write_report",
]
