#!/usr/bin/env python3
"""Packs one static binary as a single-layer OCI image layout tar.

usage: oci-image.py BINARY REF OUT.tar

The layer holds the binary as /pause; the image's entrypoint runs it. The
result is what `ctr images import` takes (index.json names the image with
the org.opencontainers.image.ref.name annotation). Reproducible: fixed
mtimes and owners, so the same binary gives the same digests.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main():
    binary, ref, out = sys.argv[1:4]
    with open(binary, "rb") as f:
        prog = f.read()
    layer_tar = tar_bytes([("pause", prog, 0o755)])
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "podnet tests: oci-image.py"}],
        },
        sort_keys=True,
    ).encode()
    blobs = {}

    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return "sha256:" + d

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": blob(layer),
                    "size": len(layer),
                }
            ],
        },
        sort_keys=True,
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": blob(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": ref,
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()
    entries = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)]
    entries += [("index.json", index, 0o644)]
    entries += [("blobs/sha256/" + d, data, 0o644) for d, data in sorted(blobs.items())]
    with open(out + ".tmp", "wb") as f:
        f.write(tar_bytes(entries))
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
