# suite/ is a user's suite that the tests here run in subprocesses, never collected with the project's tests.
collect_ignore = ["suite"]
