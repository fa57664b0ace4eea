from fixtures import run_pod  # noqa: F401  (the fixture, for this directory's tests)
