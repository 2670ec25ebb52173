"""Real servers for the test suite and the benchmark, each in a process group of its own:
redis-server (alone, with a sentinel, a local cluster), nginx, and the service under
gunicorn + gevent.

Whatever fails, nothing is left behind: a server that does not come up is killed
before the error is raised, and every server still running when the process exits
(normally, on an error, or on Ctrl-C) is killed with its whole group
(``servers.process``).
"""
