#!/usr/bin/env python3
"""Packs files into a one-layer image archive that is both an OCI image
layout (oci-layout, index.json, blobs/) and a `docker save` archive
(manifest.json with RepoTags), so ctr, kind and docker all load it.

    pack.py OUT.tar TAG FILE...      (each FILE lands at /basename, 0755)
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = 0  # fixed mtimes: the same binaries give the same image digest


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = EPOCH
            info.uid = info.gid = 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def main():
    out, tag, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    layer_tar = tar_bytes(
        [(os.path.basename(f), open(f, "rb").read(), 0o755) for f in files]
    )
    layer_gz = gzip.compress(layer_tar, mtime=EPOCH)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/podnetd"], "Cmd": ["run"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer_tar)]},
        "history": [{"created_by": "deploy/build-image"}],
    }
    config_b = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + sha(config_b),
            "size": len(config_b),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + sha(layer_gz),
                "size": len(layer_gz),
            }
        ],
    }
    manifest_b = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + sha(manifest_b),
                "size": len(manifest_b),
                "annotations": {
                    "io.containerd.image.name": tag,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    docker_manifest = [
        {
            "Config": "blobs/sha256/" + sha(config_b),
            "RepoTags": [tag],
            "Layers": ["blobs/sha256/" + sha(layer_gz)],
        }
    ]
    entries = [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644),
        ("index.json", json.dumps(index, sort_keys=True).encode(), 0o644),
        ("manifest.json", json.dumps(docker_manifest).encode(), 0o644),
        ("blobs/sha256/" + sha(config_b), config_b, 0o644),
        ("blobs/sha256/" + sha(manifest_b), manifest_b, 0o644),
        ("blobs/sha256/" + sha(layer_gz), layer_gz, 0o644),
    ]
    with open(out, "wb") as f:
        f.write(tar_bytes(entries))


if __name__ == "__main__":
    main()
