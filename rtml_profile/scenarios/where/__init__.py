"""Where the time goes: the machine's measured limits (limits.py), per-node profiles (nodes.py), start-up and
memory per runtime (lifecycle.py); the roofline that joins them to the benchmark is a pure function of the records
(rtml_profile.views).

Each measurement writes one JSON record per host in reports/data/ (`<kind>_<host>.json`, results.save_entries,
read back through rtml_profile.schema); the report only reads them. Nothing here tests a runtime's name: runtimes
are driven through their protocol (an empty model for the per-call floor, RunConfig(profile_nodes=True) for node
times).
"""
