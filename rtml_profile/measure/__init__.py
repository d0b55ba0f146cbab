"""The measurement core every scenario uses: how a call is timed (timing), what a request may ask (request), the
thing measured (targets), its accuracy and parity (accuracy), and the isolated worker that runs a scenario's
measure function (launcher). Scenarios import this package; it never imports a scenario.
"""
