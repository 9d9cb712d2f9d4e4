"""`python -m handler deploy scf | teardown | key | teardown-key`: the function on Tencent SCF with
everything it needs, or the Tencent key of the function outside Tencent (AWS Lambda), made through
Tencent's own APIs (SCF, CAM, TDMQ) with the official SDK product packages, which only the deployer
installs (requirements-deploy.txt), never the function's zip.

documents: the CAM role's trust policy, its least-privilege policy and the key's, built from the
deployment.
cloud: the API calls, each one printed under --dry-run and every change skipped there.
policy: a CAM policy made to hold its document and attached to a role or a sub-user.
role, key, function, wiring: one part each, made to match what is asked (created, updated in place,
or left alone when up to date) and taken down again.
"""
