"""Reports from stored runs: markdown tables and figures, reading typed records only.

`write_report(store)` writes REPORT.md (a summary for newcomers, then per
dataset the depth tables and figures, the defenses, the authors' comparison).
The authors' reference figures are data (`reference.reference_figures()`).
matplotlib is imported only when a figure is drawn.
"""

from unsplit_tf.reporting.document import REPORT_NAME, summary_paragraph, write_report
from unsplit_tf.reporting.grouping import (
    DefenseGroup,
    InversionSetting,
    Series,
    defense_groups,
    inversion_series,
    undefended_label_runs,
)
from unsplit_tf.reporting.reference import ReferenceFigures, reference_figures
from unsplit_tf.reporting.tables import comparison_table, inversion_table, markdown_table

__all__ = [
    "REPORT_NAME", "DefenseGroup", "InversionSetting", "ReferenceFigures", "Series", "comparison_table", "defense_groups",
    "inversion_series", "inversion_table", "markdown_table", "reference_figures", "summary_paragraph",
    "undefended_label_runs", "write_report",
]
