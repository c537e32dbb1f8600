"""Phone menus (IVR) as code: flow files, their linter, a pure engine, a simulator and scripted tests.

Knows nothing of Twilio, HTTP or the database (it imports ``hub`` only). Modules, one concept each:

- ``schema`` — the flow file's models; ``loader`` — YAML → ``Flow`` with a line for every field;
  ``load_flow(path, known_queues=...)`` refuses a flow with errors by raising ``errors.FlowInvalid``.
- ``lint`` — the rules; ``source`` — findings and line maps.
- ``engine`` — ``step(flow, state, input, Context(now, hours)) -> (state, actions)``; ``state``, ``inputs``,
  ``actions`` — the contract with the phone adapter; ``speech`` — tolerant matching of spoken choices.
- ``simulator`` — a pretend phone line (``ivr simulate``, ``ivr test``, ``bench/ivr.py``); ``conversations`` —
  scripted calls kept beside a flow; ``graph`` — the Mermaid chart; ``cli`` — ``switchboard ivr``.

Notes for the phone adapter (``channels/twilio``), which this package leaves to it:

- Per webhook: load the call's ``CallState`` (JSON, by CallSid; ``engine.new_call(flow)`` for a new call), build
  the input from Twilio's parameters (``inputs`` lists which), call ``step``, store the new state, and render
  the actions with ``VoiceResponse`` in order. When the last action is ``Lookup`` or ``Enqueue``, do that work
  and call ``step`` again at once with ``LookupResult`` or ``Queued``, appending the new actions to the ones
  already collected, until the last action is one Twilio waits on (``Gather``, ``Record``, ``Dial``) or a
  final one (``Hold``, ``Hangup``). ``Enqueue`` may come again for the same call (a replayed webhook): make it
  idempotent per call.
- ``Gather`` needs ``action_on_empty_result=True`` so silence reaches the engine as ``NoInput``.
- ``Context.hours`` must hold every queue's business hours (``hub.hours.BusinessHours.parse(queue.hours)``); a
  queue missing from it counts as always open. ``Context.now`` is the current UTC time.
- An ended state answers no actions: answer a stray webhook for it with a polite goodbye and ``<Hangup/>``
  yourself (and an empty 200 for status callbacks).
- ``Dial.number_name`` is a name to resolve from the adapter's configuration (a new ``SWITCHBOARD_...``
  setting); ``Dial.number`` is E.164 already.
- On a flow reload, ``load_flow(path, known_queues=<the hub's queue names>)``; on ``FlowInvalid`` keep the
  running flow and log ``exc.message`` (every error with its line).
"""
