"""Throwaway servers for the tests: Orthanc in its own network namespace, a private PostgreSQL.

Both listen on 127.0.0.1 only, live in temporary folders and are stopped afterwards. Test
modules import the fixtures they use from :mod:`servers.fixtures`.
"""
