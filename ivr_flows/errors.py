"""The package's exceptions (``hub.errors`` maps them to HTTP answers by status and code)::

    SwitchboardError
    └── InvalidInput            422  invalid_input
        └── FlowInvalid         422  flow_invalid   a flow file with errors, refused at load; .findings says why

The codes are stable: clients may branch on them.
"""

from __future__ import annotations

from collections.abc import Sequence

from hub.errors import InvalidInput
from ivr_flows.source import Finding, errors


class FlowInvalid(InvalidInput):
    code = "flow_invalid"

    def __init__(self, source: str, findings: Sequence[Finding]) -> None:
        self.source = source
        self.findings = list(findings)
        shown = errors(self.findings) or self.findings
        lines = "\n".join(f.format(source) for f in shown)
        super().__init__(f"the flow {source} has {len(errors(self.findings))} error(s):\n{lines}")
