"""Known etcd releases: checksums of upstream linux-amd64 tarballs, and version rules.

Checksums are facts published with each upstream release (the same values appear in
public tables such as kubespray's checksums file). Pillar may add its own
(`etcd:source:checksums`), e.g. for a site's repacked tarballs.

3.5.0-3.5.2 carry a crash-consistency bug (data inconsistency after a crash, fixed in
3.5.3); 3.5.1 is accepted only because the lab has no other 3.5 binary: never deploy it.
"""

import re

UPSTREAM_URL = "https://github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-amd64.tar.gz"

# The newest 3.5 patch release: 3.5 → 3.6 needs its own upgrade checks (see README).
DEFAULT_VERSION = "3.5.33"

UNSAFE_VERSIONS = {
    "3.5.0": "3.5.0-3.5.2 can lose consistency after a crash (fixed in 3.5.3)",
    "3.5.1": "3.5.0-3.5.2 can lose consistency after a crash (fixed in 3.5.3)",
    "3.5.2": "3.5.0-3.5.2 can lose consistency after a crash (fixed in 3.5.3)",
}

# sha256 of etcd-v<version>-linux-amd64.tar.gz as published upstream.
CHECKSUMS = {
    "3.6.14": "ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5",
    "3.6.13": "b4928654aed84d90952620c7144555e4186d795e1e7414e65fe0cf6265fd0465",
    "3.6.12": "d2564bb50b58e52fbaf3bde4a9561a1d04e20cdc761f795580e4d615d5d41355",
    "3.6.11": "8756f7a4eaf921668a83de0bf13c0f65cae9186a165696e3ae8396afe6f557ed",
    "3.6.10": "ed579fafab5701e3aaa95509969e7bc74776a4ae5269d32e3928408b406456ec",
    "3.6.9": "633136f13fcadac52e5c0ddcb97912643af6fcb9cb362e75774d0f96f7666396",
    "3.6.8": "cf9cfe91a4856cb90eed9c99e6aee4b708db2c7888b88a6f116281f04b0ea693",
    "3.6.7": "cf8af880c5a01ee5363cefa14a3e0cb7e5308dcf4ed17a6973099c9a7aee5a9a",
    "3.6.6": "887afaa4a99f22d802ccdfbe65730a5e79aa5c9ce2c8799c67e9d804c50ecedb",
    "3.6.5": "66bad39ed920f6fc15fd74adcb8bfd38ba9a6412f8c7852d09eb11670e88cac3",
    "3.6.4": "4d5f3101daa534e45ccaf3eec8d21c19b7222db377bcfd5e5a9144155238c105",
    "3.6.3": "3f3b4aa9785d86322c50b296eebdc7a0a57b27065190154b5858bf6a7512ac10",
    "3.6.2": "4b5d55d61e2218fab7c1cc1c00b341c469159ecde8cedd575fa858683f67e9f4",
    "3.6.1": "1324664bfe56d178d1362a57462ca5a7b26a6d2cbe9e1c94b6820e32cb82d673",
    "3.6.0": "42305b0dcbba7b6fdff0382d0c7b99c42026c88c44847a619ab58cde216725d9",
    "3.5.33": "5025b5b24d81a9616b6e284ccd439b9a3df055ef8fdcdc142af3ec8f6a3b3c95",
    "3.5.32": "83532f9290ee89106c4c9d0467220f65623c1faadaab800d727f7beccce4d7dd",
    "3.5.31": "e76b75c73b10196dfeb1c52fcdf9f4014e51f3082f65f28fb2e69a7bec1f916b",
    "3.5.30": "a495115162845640be08c6cda069ff961260dbced53207c5a83b1b006ff2ea8e",
    "3.5.29": "7692f812db0bfeee3a731c45046864cf729e552bad82ce7cb5b507053d033267",
    "3.5.28": "e11b6fab2ffbf0a1d6ee8f6227594045a19e0974ec779c42b8b5bb1942b2abe0",
    "3.5.27": "0aad9a9e4e0817a021e933f9806a2b2960a62f949ad5a3d6436d8886945cb1bc",
    "3.5.26": "0a682a91201dc8351d507210bc30b021a11e254eab806f03224b51e8fad29abb",
    "3.5.25": "168af82b59772e1811a9af7b358d42f5c6df44e0d9767afb006ecf12c4bbd607",
    "3.5.24": "042497e2ddcee06f22e5d486d81f58affa26b53ee423e2a6aaca3d3ea98c8191",
    "3.5.23": "8b50d62d38cb2de005b42227dd14b33f6e01758970f248f9257789ecfaf634c9",
    "3.5.22": "20174ab70a6f3df94da13ecac4610f42c47d25af82426f21c112c2c841ec499a",
    "3.5.21": "adddda4b06718e68671ffabff2f8cee48488ba61ad82900e639d108f2148501c",
    "3.5.20": "9ac85616fb8c0e45f485074dde0258ca2b7b42f1dd5320821af5a8b66daf7072",
    "3.5.19": "16ae742def5f330800590e8d505d72830a3b0b7012e559e6bd76f0bc9864bf42",
    "3.5.18": "6ddde039a7a506badf34e7edfb38e1ea90e36f05c8cfceba602045df623d86fa",
    "3.5.17": "eff6ac621d41711085d0f38fab17d8fa3705f6326c3ff11301a1f5a71fc94edd",
    "3.5.16": "b414b27a5ad05f7cb01395c447c85d3227e3fb1c176e51757a283b817f645ccc",
    "3.5.15": "3f6b48d8c2844699f2b19c1880508ecf63e1489769ed37ebb97495d5cd848a89",
    "3.5.14": "b0b34298f53f6830f08e7ddc57fc74dc45563216a66e94d9e6b0b9e0b0281b34",
    "3.5.13": "31e6fcbee0e8c3df27cf1ba69b522e338377f5ed6447f5d05700aee367f3b7e7",
    "3.5.12": "f2ff0cb43ce119f55a85012255609b61c64263baea83aa7c8e6846c0938adca5",
    "3.5.11": "e256885e753dc99001335e099d3c2eb8cf21a865a087ee4d7e3665752ae5929a",
    "3.5.10": "26e90d024fa2310bc52bb40e7f2132e81640b55f8fc446c00ae07e30af2a44fd",
    "3.5.9": "d59017044eb776597eca480432081c5bb26f318ad292967029af1f62b588b042",
    "3.5.8": "d4c1b8d90ad53658f12ffc293afc5694b7bc6cb093af609188649a799e1cc8dc",
    "3.5.7": "a43119af79c592a874e8f59c4f23832297849d0c479338f9df36e196b86bc396",
    "3.5.6": "4db32e3bc06dd0999e2171f76a87c1cffed8369475ec7aa7abee9023635670fb",
}

VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def parse(version):
    """'3.5.1' -> (3, 5, 1); None when it is not X.Y.Z."""
    if not isinstance(version, str) or not VERSION_RE.match(version):
        return None
    return tuple(int(p) for p in version.split("."))


def checksum(version, extra=None):
    """The sha256 for a version: pillar's own table first, then the built-in one."""
    extra = extra or {}
    return str(extra.get(version) or CHECKSUMS.get(version) or "").lower() or None


def tarball_name(version):
    return f"etcd-v{version}-linux-amd64.tar.gz"
