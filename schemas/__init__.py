"""The contracts between the parts: the event envelope on Kafka, topic names, identifier syntax and the
Postgres DDL. Imports nothing from the rest of the project."""
