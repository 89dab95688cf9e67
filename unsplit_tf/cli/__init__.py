"""Command-line front doors: the `unsplit-tf` command and its verbs, one module per verb.

Each verb module maps its flags onto library configs one to one and calls the
run layer; the shared pieces are `_quiet` (TensorFlow's start-up noise),
`_common` (flags, data, errors, the entry wrapper), `_outputs` (output
locations checked before any work) and `_progress` (progress lines and
TensorBoard scalars). Importing this package imports no TensorFlow.
"""
