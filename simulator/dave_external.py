"""Discord's side of DAVE: the MLS *external sender* and the few MLS encodings a voice server needs.

davey (like libdave) implements only the member side of DAVE. A voice server plays the MLS external sender
(RFC 9420 §12.1.8.1): it announces its signature key (op 25), then proposes adding and removing members with
signed *public* MLSMessages (op 27) that the members commit. An external sender's signature covers only the
framed content (no group context, no membership tag), so this side needs no MLS group state: the channel id
(group id), the current epoch and, for removals, the leaf index.

Encodings (TLS presentation language, RFC 9420 §2.1.2 variable-length vectors)::

    ExternalSender  = opaque signature_key<V> (65-byte uncompressed P-256 point) | uint16 credential_type (1 basic)
                      | opaque identity<V>
    MLSMessage      = uint16 version (1 mls10) | uint16 wire_format (1 public) | PublicMessage
    PublicMessage   = FramedContent | opaque signature<V>          (proposal from an external sender: no tags)
    FramedContent   = opaque group_id<V> | uint64 epoch | Sender (uint8 2 external | uint32 index 0)
                      | opaque authenticated_data<V> | uint8 content_type (2 proposal) | Proposal
    Proposal        = uint16 type (1 add | 3 remove) | KeyPackage  or  uint32 removed leaf
    signature       = ECDSA-P256-SHA256 (DER) over  opaque label<V> = "MLS 1.0 FramedContentTBS"
                      | opaque content<V> = uint16 version | uint16 wire_format | FramedContent
    op 27 payload   = uint8 operation (0 append, 1 revoke) | opaque messages<V> (MLSMessages back to back)
    op 28 payload   = commit MLSMessage | Welcome (optional, raw)      -> `split_commit_welcome`

Group id = the voice channel id as 8 bytes big-endian; ciphersuite 2 (MLS_128_DHKEMP256_AES128GCM_SHA256_P256).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

MLS10 = 1
WIRE_PUBLIC_MESSAGE = 1
SENDER_MEMBER = 1
SENDER_EXTERNAL = 2
CONTENT_APPLICATION = 1
CONTENT_PROPOSAL = 2
CONTENT_COMMIT = 3
PROPOSAL_ADD = 1
PROPOSAL_REMOVE = 3
CREDENTIAL_BASIC = 1
PROPOSALS_APPEND = 0
PROPOSALS_REVOKE = 1
_SIGN_LABEL = b"MLS 1.0 FramedContentTBS"


class MlsDecodeError(ValueError):
    """Bytes that do not parse as the expected MLS structure."""


# --- variable-length vectors -------------------------------------------------------------------------------------


def encode_varint(n: int) -> bytes:
    """RFC 9420 §2.1.2 variable-length integer (1, 2 or 4 bytes)."""
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return struct.pack(">H", 0x4000 | n)
    if n < 0x40000000:
        return struct.pack(">I", 0x80000000 | n)
    raise ValueError(f"vector too long for MLS: {n} bytes")


def vec(data: bytes) -> bytes:
    """``opaque data<V>``: a varint length followed by the bytes."""
    return encode_varint(len(data)) + data


class Reader:
    """Cursor over TLS-encoded bytes; every read raises `MlsDecodeError` when the data runs out."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MlsDecodeError(f"truncated: need {n} bytes at offset {self.pos} of {len(self.data)}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def varint(self) -> int:
        first = self.u8()
        prefix = first >> 6
        if prefix == 0:
            return first
        if prefix == 1:
            return ((first & 0x3F) << 8) | self.u8()
        if prefix == 2:
            return ((first & 0x3F) << 24) | int.from_bytes(self.take(3), "big")
        raise MlsDecodeError("invalid varint prefix 0b11")

    def vec(self) -> bytes:
        return self.take(self.varint())


# --- the external sender -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FramedInfo:
    """The routing part of a public MLSMessage (enough to follow a commit)."""

    group_id: bytes
    epoch: int
    sender_type: int
    sender_index: int
    content_type: int


class ExternalSender:
    """The voice server's MLS external sender: a P-256 signing key and a basic credential."""

    def __init__(
        self, identity: bytes = b"loopback-voice-server", private_key: ec.EllipticCurvePrivateKey | None = None
    ):
        self.identity = identity
        self._key = private_key or ec.generate_private_key(ec.SECP256R1())
        self.public_key = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def package(self) -> bytes:
        """Op 25 payload: the serialized ExternalSender struct."""
        return vec(self.public_key) + struct.pack(">H", CREDENTIAL_BASIC) + vec(self.identity)

    def add_proposal(self, group_id: bytes, epoch: int, key_package: bytes) -> bytes:
        """A signed external Add proposal (public MLSMessage) for a member's serialized KeyPackage."""
        return self._proposal_message(group_id, epoch, struct.pack(">H", PROPOSAL_ADD) + key_package)

    def remove_proposal(self, group_id: bytes, epoch: int, leaf_index: int) -> bytes:
        """A signed external Remove proposal for the member at ``leaf_index``."""
        return self._proposal_message(group_id, epoch, struct.pack(">HI", PROPOSAL_REMOVE, leaf_index))

    def _proposal_message(self, group_id: bytes, epoch: int, proposal: bytes) -> bytes:
        framed = (
            vec(group_id)
            + struct.pack(">Q", epoch)
            + struct.pack(">BI", SENDER_EXTERNAL, 0)
            + vec(b"")  # authenticated_data
            + bytes((CONTENT_PROPOSAL,))
            + proposal
        )
        preamble = struct.pack(">HH", MLS10, WIRE_PUBLIC_MESSAGE)
        tbs = preamble + framed  # FramedContentTBS: no GroupContext for external senders
        signature = self._key.sign(vec(_SIGN_LABEL) + vec(tbs), ec.ECDSA(hashes.SHA256()))
        return preamble + framed + vec(signature)


def proposals_payload(messages: list[bytes], operation: int = PROPOSALS_APPEND) -> bytes:
    """Op 27 payload (after the binary frame header): operation type + the messages as one vector."""
    return bytes((operation,)) + vec(b"".join(messages))


def group_id_for_channel(channel_id: int) -> bytes:
    return struct.pack(">Q", channel_id)


# --- following what members send -----------------------------------------------------------------------------------


def _skip_credential(r: Reader) -> None:
    ctype = r.u16()
    if ctype == CREDENTIAL_BASIC:
        r.vec()
    else:  # x509: certificates<V>; other types are not used by DAVE
        r.vec()


def _skip_leaf_node(r: Reader) -> None:
    r.vec()  # encryption_key
    r.vec()  # signature_key
    _skip_credential(r)
    for _ in range(5):  # capabilities: versions, cipher_suites, extensions, proposals, credentials
        r.vec()
    source = r.u8()
    if source == 1:  # key_package: lifetime
        r.take(16)
    elif source == 3:  # commit: parent_hash
        r.vec()
    elif source != 2:
        raise MlsDecodeError(f"unknown leaf node source {source}")
    r.vec()  # extensions
    r.vec()  # signature


def read_framed_content_header(r: Reader) -> FramedInfo:
    """Read an MLSMessage preamble and FramedContent up to (not including) its body."""
    version, wire = r.u16(), r.u16()
    if version != MLS10 or wire != WIRE_PUBLIC_MESSAGE:
        raise MlsDecodeError(f"not a public MLS 1.0 message (version {version}, wire format {wire})")
    group_id = r.vec()
    epoch = r.u64()
    sender_type = r.u8()
    sender_index = r.u32() if sender_type in (SENDER_MEMBER, SENDER_EXTERNAL) else 0
    r.vec()  # authenticated_data
    content_type = r.u8()
    return FramedInfo(group_id, epoch, sender_type, sender_index, content_type)


def split_commit_welcome(payload: bytes) -> tuple[FramedInfo, bytes, bytes | None]:
    """Split an op 28 payload into (commit info, commit MLSMessage, Welcome or None)."""
    r = Reader(payload)
    info = read_framed_content_header(r)
    if info.content_type != CONTENT_COMMIT:
        raise MlsDecodeError(f"expected a commit, got content type {info.content_type}")
    r.vec()  # proposals<V> (ProposalOrRef list)
    if r.u8():  # optional<UpdatePath>
        _skip_leaf_node(r)
        r.vec()  # nodes<V>
    r.vec()  # signature
    r.vec()  # confirmation_tag
    if info.sender_type == SENDER_MEMBER:
        r.vec()  # membership_tag
    commit = payload[: r.pos]
    welcome = payload[r.pos :] or None
    return info, commit, welcome
