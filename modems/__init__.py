"""GSM modems: what a modem link needs below the gateway.

`tpdu` (SMS PDUs, TS 23.040), `errors` (+CMS/+CME codes), `at` (the AT byte stream), `session`
(start-up, send, receive, health), `limits` (a SIM's pace and daily cap), `serial_link` (the
asyncio adapter and its supervisor) and `emulator` (a modem on a pty, for tests and
`tandem sim modem`). Imports `smpp` (text and segmentation) and nothing else of ours.
"""
