"""The platform's event contracts, as others read them.

``events/<service>/<Type>.v<N>.json`` holds the JSON Schema of every version of every
event type each service publishes: generated from the event classes for the current
versions, kept as recorded for the older ones (their classes are gone; each notes the
upcaster that lifts it). The folder is package data: the services load it to check
what they consume (:func:`civitas.contracts.schemas.schemas_of`), and a consumer in
another codebase copies it. It is also the baseline the breaking check compares the
classes with (``make events-breaking``); ``make events-baseline`` moves it on purpose.
The AsyncAPI document (``make asyncapi``) is built from it.
"""
