"""Starts one container's process: what a container runtime does between "create" and "exec".

Run by podrunner.py as `nsenter --net=<pod> -- unshare --mount --propagation private --
python3 launch.py SPEC.json`, so it is already in the pod's network namespace and in a mount
namespace of its own. It builds the container's root filesystem and execs the program in it,
keeping its PID (every step execs), so the runner signals the program itself:

1. the root: an overlay of the host's root (lower) with a tmpfs upper layer, so the image's
   files (the program at its image path, the image's /etc/passwd users) can be added without
   touching the host; /proc, /dev and /sys bound in;
2. the volumes bound at their mount paths (parents first, as containerd sorts them), made
   read-only where `readOnly`;
3. the root remounted read-only if `readOnlyRootFilesystem`;
4. chroot, working directory, then `setpriv` to the user and group, with no new privileges
   and no capabilities where the security context says so, and exec the program with exactly
   the container's environment.
"""

import json
import os
import subprocess
import sys


def run(*argv):
    subprocess.run(argv, check=True)


def bind(source, target, readonly, recursive=False):
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            open(target, "w").close()
    run("mount", "--rbind" if recursive else "--bind", source, target)
    if readonly:
        run("mount", "-o", "remount,bind,ro", target)


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    base = spec["dir"]
    upper, root = os.path.join(base, "upper"), os.path.join(base, "root")
    os.makedirs(upper, exist_ok=True)
    os.makedirs(root, exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", upper)
    os.mkdir(os.path.join(upper, "data"))
    os.mkdir(os.path.join(upper, "work"))
    run("mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir=/,upperdir={upper}/data,workdir={upper}/work", root)
    for system in ("proc", "dev", "sys"):
        bind(f"/{system}", os.path.join(root, system), readonly=False, recursive=True)

    def inside(path):
        return os.path.join(root, path.lstrip("/"))

    # The image's own files.
    for entry in spec["image_files"]:
        target = inside(entry["path"])
        if "source" in entry:
            bind(entry["source"], target, readonly=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not entry.get("append") and os.path.lexists(target):
                os.unlink(target)  # a symlink in the host's root is replaced, not followed
            with open(target, "a" if entry.get("append") else "w") as f:
                f.write(entry["content"])
    for directory in spec.get("directories", []):
        os.makedirs(inside(directory), mode=0o755, exist_ok=True)
    # Volumes, parents before children.
    for mount in sorted(spec["mounts"], key=lambda m: m["path"].rstrip("/").count("/")):
        bind(mount["source"], inside(mount["path"]), mount["readOnly"])
    if spec["readOnlyRoot"]:
        run("mount", "-o", "remount,bind,ro", root)

    os.chroot(root)
    os.chdir(spec["workingDir"])
    argv = ["setpriv", f"--reuid={spec['uid']}", f"--regid={spec['gid']}"]
    argv += [f"--groups={','.join(map(str, spec['groups']))}"] if spec["groups"] else ["--clear-groups"]
    if spec["noNewPrivs"]:
        argv.append("--no-new-privs")
    if spec["dropAllCaps"]:
        argv += ["--inh-caps=-all", "--bounding-set=-all"]
    os.execve("/usr/bin/setpriv", argv + ["--", *spec["argv"]], spec["env"])


if __name__ == "__main__":
    main()
