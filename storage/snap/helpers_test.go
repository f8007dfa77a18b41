package snap

import "hash/crc32"

func crcOf(b []byte) uint32               { return crc32.Checksum(b, crcTable) }
func crcUpdate(c uint32, b []byte) uint32 { return crc32.Update(c, crcTable, b) }
