"""What the exporter reads of the running gateway: `MetricsSource` (types only).

`gateway.app.Gateway` satisfies it; typing against it, not against `Gateway`, keeps
`gateway.app` (which starts the exporter) out of the exporter's imports. Only the type checker
reads this module's protocols.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dlr.correlation import Correlator
    from gateway import stages
    from gateway.services import GatewayCounters, GatewayServices

    class ExportedCounters(GatewayCounters, Protocol):
        """What the exporter reads of `gateway.app.GatewayStats` beyond the channels' view."""

        @property
        def submitted_by(self) -> dict[tuple[str, str], int]: ...
        @property
        def finals(self) -> dict[tuple[str, str, str], int]: ...
        @property
        def temporary_failures(self) -> int: ...
        @property
        def failovers(self) -> int: ...
        @property
        def expired(self) -> int: ...
        @property
        def receipts_correlated(self) -> int: ...
        @property
        def receipts_held(self) -> int: ...
        @property
        def receipts_unmatched(self) -> int: ...
        @property
        def receipts_unparseable(self) -> int: ...
        @property
        def dlr_timeouts(self) -> int: ...
        @property
        def accept_to_final(self) -> dict[str, stages.Histogram]: ...

    class MetricsSource(GatewayServices, Protocol):
        """The running gateway as the exporter reads it: the channels' interface and a few
        counters more. `gateway.app.Gateway` satisfies it; typing against it, not against
        `Gateway`, keeps `gateway.app` (which starts the exporter) out of this module's
        imports."""

        @property
        def stats(self) -> ExportedCounters: ...
        @property
        def correlator(self) -> Correlator[Any, Any]: ...
        @property
        def stopping(self) -> bool: ...
