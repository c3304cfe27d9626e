package tui

import (
	"errors"
	"io"

	tea "github.com/charmbracelet/bubbletea"
)

// Run opens the files and browses them until the user quits. A file that
// cannot be opened gives the error screen, naming the file and the cause,
// and after the user quits Run returns that error too, so that the shell
// keeps the message and a non-zero status once the screen is gone.
func Run(paths []string, in io.Reader, out io.Writer) error {
	var m Model
	src, openErr := Open(paths...)
	if openErr != nil {
		m = NewError(openErr)
	} else {
		defer src.Close()
		m = New(src)
	}
	opts := []tea.ProgramOption{tea.WithAltScreen(), tea.WithMouseCellMotion()}
	if in != nil {
		opts = append(opts, tea.WithInput(in))
	}
	if out != nil {
		opts = append(opts, tea.WithOutput(out))
	}
	if _, err := tea.NewProgram(m, opts...).Run(); err != nil {
		// Without a terminal the error screen never shows: say why the
		// files did not open as well as why the screen did not.
		return errors.Join(openErr, err)
	}
	return openErr
}
