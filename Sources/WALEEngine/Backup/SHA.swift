import Crypto

func sha256(_ data: [UInt8]) -> SHA256.Digest { SHA256.hash(data: data) }
