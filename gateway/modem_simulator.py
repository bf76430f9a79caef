"""GSM modems emulated inside the daemon, as the SMSC simulator is: a sandbox with no hardware.

Owns starting one `modems.emulator_io.PtyModem` per `[modem_simulator] devices` path (the path
becomes a symlink to the pty's slave side, which a `type = "modem"` link opens exactly as it
would open /dev/serial/by-id/...), generating MOs on them when asked, and closing them (the
links see an unplug) when the daemon stops. The emulator itself lives in `modems.emulator`.

Must never be mistaken for a phone network: every report and MO is invented.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from gateway.config import ModemSimulatorConfig
from gateway.tasks import cancel_and_wait
from modems.emulator import EmulatedModem, ModemSettings
from modems.emulator_io import PtyModem

log = logging.getLogger("tandem.modem_simulator")


class DaemonModemSimulator:
    def __init__(self, config: ModemSimulatorConfig) -> None:
        self.config = config
        self.modems: list[PtyModem] = []
        self._mo_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = self.config
        for device in config.devices:
            path = Path(device)
            path.parent.mkdir(parents=True, exist_ok=True)
            settings = ModemSettings(
                pin=config.pin,
                operator=config.operator,
                report_delay=config.report_delay,
                report_status=config.report_status,
            )
            modem = PtyModem(EmulatedModem(settings), path)
            modem.plug()
            self.modems.append(modem)
            log.info("emulated GSM modem on %s (%s)", path, path.resolve())
        if config.mo_interval is not None:
            self._mo_task = asyncio.create_task(
                self._generate_mos(config.mo_interval), name="modem simulator MOs"
            )

    async def _generate_mos(self, interval: float) -> None:
        count = 0
        while True:
            await asyncio.sleep(interval)
            count += 1
            for modem in self.modems:
                modem.modem.inject_mo(f"Test message {count} from the emulated modem")
                modem.poke()

    async def stop(self) -> None:
        if self._mo_task is not None:
            await cancel_and_wait(self._mo_task)
        for modem in self.modems:
            modem.close()
        self.modems.clear()
