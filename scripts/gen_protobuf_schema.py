#!/usr/bin/env python3
"""Generate crates/fakekube/src/protobuf/schema.rs: the protobuf field tables of the built-in kinds the
fake API server decodes (see crates/fakekube/src/protobuf/mod.rs).

The source is the Go type metadata inside a kubectl binary: a Go program keeps, for
reflection, every struct's fields with their Go types and struct tags, and the k8s.io/api
types carry both tags that matter here, `json:"name,omitempty"` and
`protobuf:"bytes,N,opt,name=..."`. From them this script takes, per field: the protobuf tag
number, the JSON name, omitempty, whether the Go field is a pointer, repeated or a map, and
the element type. That is what a server needs to turn a protobuf body into the JSON the same
Go object would marshal to (omitempty drops zero non-pointer scalars; a set pointer is kept
even when zero; structs are never omitted).

Usage: python3 scripts/gen_protobuf_schema.py /path/to/kubectl > crates/fakekube/src/protobuf/schema.rs
(Linux amd64 kubectl built with Go >= 1.22; tested with v1.33 and v1.36.)
"""

import re
import struct
import subprocess
import sys

# (apiVersion, kind, Go package): the kinds the fake serves and decodes.
ROOTS = [
    ("v1", "Namespace", "k8s.io/api/core/v1"),
    ("v1", "Pod", "k8s.io/api/core/v1"),
    ("v1", "ConfigMap", "k8s.io/api/core/v1"),
    ("v1", "Secret", "k8s.io/api/core/v1"),
    ("v1", "Service", "k8s.io/api/core/v1"),
    ("v1", "Event", "k8s.io/api/core/v1"),
    ("v1", "ServiceAccount", "k8s.io/api/core/v1"),
    ("v1", "PersistentVolumeClaim", "k8s.io/api/core/v1"),
    ("apps/v1", "Deployment", "k8s.io/api/apps/v1"),
    ("apps/v1", "StatefulSet", "k8s.io/api/apps/v1"),
    ("apps/v1", "ReplicaSet", "k8s.io/api/apps/v1"),
    ("batch/v1", "Job", "k8s.io/api/batch/v1"),
    ("batch/v1", "CronJob", "k8s.io/api/batch/v1"),
    ("autoscaling/v1", "Scale", "k8s.io/api/autoscaling/v1"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "k8s.io/api/autoscaling/v2"),
    ("coordination.k8s.io/v1", "Lease", "k8s.io/api/coordination/v1"),
    ("rbac.authorization.k8s.io/v1", "Role", "k8s.io/api/rbac/v1"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "k8s.io/api/rbac/v1"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "k8s.io/api/rbac/v1"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "k8s.io/api/rbac/v1"),
]

META = "k8s.io/apimachinery/pkg/apis/meta/v1"
# Types with their own protobuf and JSON forms (custom Marshal/MarshalJSON in apimachinery).
SPECIAL = {
    (META, "v1.Time"): "Time",
    (META, "v1.MicroTime"): "MicroTime",
    (META, "v1.FieldsV1"): "FieldsV1",
    ("k8s.io/apimachinery/pkg/api/resource", "resource.Quantity"): "Quantity",
    ("k8s.io/apimachinery/pkg/util/intstr", "intstr.IntOrString"): "IntOrString",
}
# Special types the decoder does not implement yet: stop rather than decode them as plain messages.
UNSUPPORTED = {(META, "v1.Duration"), ("k8s.io/apimachinery/pkg/runtime", "runtime.RawExtension")}

# reflect.Kind values (internal/abi).
BOOL, INT32, INT64, UINT8 = 1, 5, 6, 8
ARRAY, CHAN, MAP, PTR, SLICE, STRING, STRUCT = 17, 18, 21, 22, 23, 24, 25
# Only the scalar kinds the decoded types use; others stop the script (see type_of).
SCALAR = {BOOL: "Bool", INT32: "I32", INT64: "I64", STRING: "Str"}


class GoBinary:
    """Reads abi.Type records of a Go ELF binary (amd64 layout)."""

    def __init__(self, path):
        self.b = open(path, "rb").read()
        b = self.b
        shoff = struct.unpack_from("<Q", b, 0x28)[0]
        entsize, num, strndx = struct.unpack_from("<HHH", b, 0x3A)
        raw = [struct.unpack_from("<IIQQQQ", b, shoff + i * entsize) for i in range(num)]
        names = raw[strndx][4]
        self.sections = {}
        for name, typ, _flags, addr, off, size in raw:
            n = b[names + name:b.index(b"\0", names + name)].decode()
            if typ != 8:  # not NOBITS
                self.sections[n] = (addr, off, size)
        self.base = self.sections[".rodata"][0]  # runtime.types starts .rodata

    def off(self, va):
        for addr, off, size in self.sections.values():
            if addr and addr <= va < addr + size:
                return off + va - addr
        raise ValueError(hex(va))

    def u8(self, va):
        return self.b[self.off(va)]

    def i32(self, va):
        return struct.unpack_from("<i", self.b, self.off(va))[0]

    def u64(self, va):
        return struct.unpack_from("<Q", self.b, self.off(va))[0]

    def name(self, va):
        """abi.Name: flags byte, varint length, bytes, then (if flag 2) varint length, tag."""
        flags = self.u8(va)
        va += 1

        def varint(va):
            x = shift = 0
            while True:
                c = self.u8(va)
                va += 1
                x |= (c & 0x7F) << shift
                shift += 7
                if c < 0x80:
                    return x, va

        n, va = varint(va)
        s = self.b[self.off(va):self.off(va) + n].decode()
        va += n
        tag = ""
        if flags & 2:
            n, va = varint(va)
            tag = self.b[self.off(va):self.off(va) + n].decode()
        return s, tag, bool(flags & 8)

    def kind(self, t):
        return self.u8(t + 23) & 0x1F

    def elem(self, t):
        return self.u64(t + 48)

    def type_name(self, t):
        s = self.name(self.base + self.i32(t + 40))[0]
        return s[1:] if self.u8(t + 20) & 2 else s  # TFlagExtraStar

    def pkg_path(self, t):
        if not self.u8(t + 20) & 1:  # TFlagUncommon
            return ""
        return self.name(self.base + self.i32(t + 80))[0]  # after StructType's 80 bytes

    def fields(self, t):
        ptr, n = self.u64(t + 56), self.u64(t + 64)
        out = []
        for i in range(n):
            name_p, typ, _off = struct.unpack_from("<QQQ", self.b, self.off(ptr + 24 * i))
            name, tag, embedded = self.name(name_p)
            out.append((name, tag, embedded, typ))
        return out

    def structs(self):
        """Every struct type reachable from the type links, by (package, name)."""
        addr, off, size = self.sections[".typelink"]
        stack = [self.base + struct.unpack_from("<i", self.b, off + i)[0] for i in range(0, size, 4)]
        seen, found = set(), {}
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            try:
                k = self.kind(t)
                if self.i32(t + 44):
                    stack.append(self.base + self.i32(t + 44))
                if k in (PTR, SLICE, ARRAY, CHAN):
                    stack.append(self.elem(t))
                elif k == MAP:
                    stack += [self.u64(t + 48), self.u64(t + 56)]
                elif k == STRUCT:
                    found.setdefault((self.pkg_path(t), self.type_name(t)), t)
                    stack += [f[3] for f in self.fields(t)]
            except (ValueError, UnicodeDecodeError, struct.error):
                continue
        return found


def generate(path):
    go = GoBinary(path)
    structs = go.structs()
    by_addr = {t: k for k, t in structs.items()}
    order, index, tables = [], {}, {}

    def type_of(t, where):
        k = go.kind(t)
        if k in SCALAR:
            return SCALAR[k]
        if k == SLICE and go.kind(go.elem(t)) == UINT8:
            return "Bytes"
        if k == STRUCT:
            key = by_addr[t]
            if key in SPECIAL:
                return SPECIAL[key]
            if key in UNSUPPORTED:
                raise SystemExit("%s at %s: teach the decoder this type first" % (key, where))
            if key not in index:
                index[key] = len(order)
                order.append(key)
                tables[key] = message(t, key)
            return "M(%d)" % index[key]
        raise SystemExit("unhandled Go kind %d (%s) at %s" % (k, go.type_name(t), where))

    def message(t, key):
        out = []
        for fname, tag, embedded, ft in go.fields(t):
            pb = re.search(r'protobuf:"([^"]*)"', tag)
            js = re.search(r'json:"([^"]*)"', tag)
            if not pb or pb.group(1) == "-":
                continue  # not on the wire (TypeMeta: the envelope carries it)
            if not js:
                raise SystemExit("no json tag: %s.%s" % (key, fname))
            opts = js.group(1).split(",")
            if opts[0] == "-":
                continue
            number = int(pb.group(1).split(",")[1])
            flags = []
            if "omitempty" in opts[1:]:
                flags.append("OMIT")
            if opts[0] == "":
                assert embedded, (key, fname)
                flags.append("INLINE")
            card, k = "One", go.kind(ft)
            if k == PTR:
                flags.append("PTR")
                ft = go.elem(ft)
                k = go.kind(ft)
            if k == SLICE and go.kind(go.elem(ft)) != UINT8:
                card, ft = "Rep", go.elem(ft)
                if go.kind(ft) == PTR:
                    ft = go.elem(ft)
            elif k == MAP:
                card = "Map"
                if go.kind(go.u64(ft + 48)) != STRING:
                    raise SystemExit("map key not a string: %s.%s" % (key, fname))
                ft = go.u64(ft + 56)
                if go.kind(ft) == SLICE and go.kind(go.elem(ft)) != UINT8:
                    raise SystemExit("map of lists: %s.%s" % (key, fname))
            ty = type_of(ft, "%s.%s" % (key, fname))
            out.append((number, opts[0], ty, card, flags, fname))
        return out

    roots = []
    for api_version, kind, pkg in ROOTS:
        t = structs[(pkg, pkg.rsplit("/", 1)[1] + "." + kind)]
        roots.append((api_version, kind, type_of(t, kind)[2:-1]))

    version = subprocess.run([path, "version", "--client"], capture_output=True, text=True).stdout
    version = version.splitlines()[0].split(":")[1].strip() if version else "?"
    w = sys.stdout.write
    w("// @generated by scripts/gen_protobuf_schema.py from the Go type metadata of kubectl %s.\n" % version)
    w("// Do not edit: regenerate (see the script) when a newer kubectl sends fields missing here.\n")
    w("// One `Msg` per Go struct: fields in Go declaration order (the order Go's JSON writes),\n")
    w("// each `f(protobuf tag, JSON name, type, cardinality, flags)`.\n\n")
    w("use super::Card::{Map, One, Rep};\n")
    w("use super::Ty::*;\nuse super::{f, Msg, INLINE, OMIT, PTR};\n\n")
    w("/// (apiVersion, kind, index into MESSAGES) of each kind decoded.\n")
    w("pub(super) static ROOTS: &[(&str, &str, u16)] = &[\n")
    for api_version, kind, i in roots:
        w('    ("%s", "%s", %s),\n' % (api_version, kind, i))
    w("];\n\npub(super) static MESSAGES: &[Msg] = &[\n")
    for i, key in enumerate(order):
        name = key[0] + "." + key[1].split(".", 1)[1]
        w('    // %d\n    Msg {\n        name: "%s",\n        fields: &[\n' % (i, name))
        for number, json_name, ty, card, flags, _ in tables[key]:
            w('            f(%d, "%s", %s, %s, %s),\n' % (number, json_name, ty, card, "|".join(flags) or "0"))
        w("        ],\n    },\n")
    w("];\n")


if __name__ == "__main__":
    generate(sys.argv[1] if len(sys.argv) > 1 else "kubectl")
