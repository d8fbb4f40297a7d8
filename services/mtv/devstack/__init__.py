"""The local development stack: a real Kafka broker from Maven jars, the vSphere simulator
and the four services, started as background processes under the git-ignored `.run/` folder.

Used by `make up` / `make down` and by the pytest fixtures, so tests and users run the same thing.
"""
