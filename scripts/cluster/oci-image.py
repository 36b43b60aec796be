#!/usr/bin/env python3
"""Pack a root filesystem directory into an OCI image archive, without Docker or a registry.

usage: oci-image.py ROOTFS_DIR NAME:TAG OUT.tar [--entrypoint /bin/x [ARG ...]] [--user 65532]
                    [--env K=V ...]
Import it into the node's containerd for the kubelet with:
    ctr -a SOCKET -n k8s.io images import OUT.tar
then use image NAME:TAG with imagePullPolicy: Never (or IfNotPresent).
Static binaries need nothing else in the rootfs; files keep their modes, owned by root."""
import argparse, gzip, hashlib, io, json, os, tarfile, time

def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rootfs"); ap.add_argument("ref"); ap.add_argument("out")
    ap.add_argument("--entrypoint", nargs="+", default=None)
    ap.add_argument("--user", default="0")
    ap.add_argument("--env", action="append", default=[])
    a = ap.parse_args()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for root, dirs, files in os.walk(a.rootfs):
            dirs.sort()
            for n in sorted(dirs) + sorted(files):
                p = os.path.join(root, n)
                ti = t.gettarinfo(p, arcname=os.path.relpath(p, a.rootfs))
                ti.uid = ti.gid = 0; ti.uname = ti.gname = ""; ti.mtime = 0
                if ti.isfile():
                    with open(p, "rb") as f: t.addfile(ti, f)
                else:
                    t.addfile(ti)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    # Level 6, not gzip's 9: a 94 MB debug binary packs in 6 s instead of 16, 1% larger.
    layer_d, layer = blob(gzip.compress(raw.getvalue(), compresslevel=6, mtime=0))
    cfg = {"architecture": "amd64", "os": "linux",
           "config": {"User": a.user, "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] + a.env,
                      "Entrypoint": a.entrypoint},
           "rootfs": {"type": "layers", "diff_ids": [diff_id]},
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0))}
    cfg_d, cfg_b = blob(json.dumps(cfg).encode())
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": len(cfg_b)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_d, "size": len(layer)}]}
    man_d, man_b = blob(json.dumps(man).encode())
    name, tag = a.ref.rsplit(":", 1)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_d, "size": len(man_b),
        "annotations": {"io.containerd.image.name": f"docker.io/{name}:{tag}" if "/" in name and "." not in name.split("/")[0] else a.ref,
                        "org.opencontainers.image.ref.name": tag}}]}
    with tarfile.open(a.out, "w") as out:
        def add(path, data):
            ti = tarfile.TarInfo(path); ti.size = len(data); ti.mtime = 0
            out.addfile(ti, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for d, b in ((layer_d, layer), (cfg_d, cfg_b), (man_d, man_b)):
            add("blobs/sha256/" + d.split(":")[1], b)
    print(a.out)

if __name__ == "__main__":
    main()
