"""A real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager), no nodes.

kind needs a Docker engine, which these machines do not have, so the project builds the upstream binaries from Go
modules (``build``) and runs them on loopback (``cluster``). The demo, ``make cluster-up`` and the pytest session
fixture all go through this package, so every test of CRD validation, status subresources and RBAC talks to a
genuine API server.
"""
