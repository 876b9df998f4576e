"""The store: engine and sessions, the schema, one repository per kind of thing kept
(conversations, records, runs, events, the team memory's index), and the dataclasses they return."""
