"""Nodes as a graph: which ones something else points at, where siblings live, and
removing nodes with every reference renumbered. Instancing and joining fold sibling nodes
into one; both follow these rules."""

from __future__ import annotations

from collections import Counter


def pinned_nodes(doc_json: dict) -> set[int]:
    """Nodes something other than their parent or scene points at: animation targets and
    skin joints and skeletons. Folding one away would break what points at it."""
    pinned: set[int] = set()
    for anim in doc_json.get("animations", []):
        for channel in anim.get("channels", []):
            if "node" in channel.get("target", {}):
                pinned.add(channel["target"]["node"])
    for skin in doc_json.get("skins", []):
        pinned.update(skin.get("joints", []))
        if "skeleton" in skin:
            pinned.add(skin["skeleton"])
    return pinned


def sibling_lists(doc_json: dict) -> list[list[int]]:
    """Every list of siblings: each node's children, then each scene's roots."""
    lists = [node.get("children", []) for node in doc_json.get("nodes", [])]
    return lists + [scene.get("nodes", []) for scene in doc_json.get("scenes", [])]


def root_counts(doc_json: dict) -> Counter:
    """How many scenes list each node as a root (a node in two scenes cannot be folded)."""
    counts: Counter = Counter()
    for scene in doc_json.get("scenes", []):
        counts.update(scene.get("nodes", []))
    return counts


def remove_nodes(doc_json: dict, keep: list[bool]) -> None:
    """Drop the nodes `keep` marks False (nothing but their parent or scene may refer to
    them: see `pinned_nodes`) and renumber every reference, in place."""
    remap: dict[int, int] = {}
    kept: list[dict] = []
    for i, node in enumerate(doc_json["nodes"]):
        if keep[i]:
            remap[i] = len(kept)
            kept.append(node)
    doc_json["nodes"] = kept
    for node in kept:
        if "children" in node:
            node["children"] = [remap[c] for c in node["children"] if c in remap]
            if not node["children"]:
                del node["children"]  # glTF forbids empty arrays
    for scene in doc_json.get("scenes", []):
        if "nodes" in scene:
            scene["nodes"] = [remap[n] for n in scene["nodes"] if n in remap]
    for skin in doc_json.get("skins", []):
        skin["joints"] = [remap[j] for j in skin.get("joints", [])]
        if "skeleton" in skin:
            skin["skeleton"] = remap[skin["skeleton"]]
    for anim in doc_json.get("animations", []):
        for channel in anim.get("channels", []):
            target = channel.get("target", {})
            if "node" in target:
                target["node"] = remap[target["node"]]


__all__ = ["pinned_nodes", "sibling_lists", "root_counts", "remove_nodes"]
