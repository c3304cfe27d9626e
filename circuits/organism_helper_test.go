package circuits

import "github.com/loupe-dev/loupe/probe"

type organismModel struct{ *probe.Model }
