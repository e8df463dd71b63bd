/* The pieces of a streamed reply, joined into chunks as they come (pieces.c). */
#ifndef LLM_PIECES_H
#define LLM_PIECES_H

#include "compat.h"

/* [-0, +0] Appends the string at index s to the list at index list; may raise (memory). */
void llm_pieces_add(lua_State *L, int list, int s);
void llm_pieces_register(lua_State *L);   /* core.add_piece; the core's table on top */

#endif
